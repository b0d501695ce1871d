"""Shared pytest marks."""

from __future__ import annotations

import pytest
from django.apps import apps


def transactional_all_apps() -> pytest.MarkDecorator:
    """`transactional_db` that can be flushed: `available_apps` (every installed app, by name: an
    INSTALLED_APPS entry may be an AppConfig path, see config.admin_site) makes the flush TRUNCATE … CASCADE
    (django-auditlog's swapped-out LogEntry table still references auth_user and django_content_type;
    django-auditlog issue #804)."""
    return pytest.mark.django_db(transaction=True, available_apps=[c.name for c in apps.get_app_configs()])
