"""The admin site: Django's, without the navigation sidebar, and its list of apps built only where a page
shows it.

The sidebar repeats the index's list of every model on every admin page; the index page and the
breadcrumbs remain the navigation. Turned off with Django's own switch (AdminSite.enable_nav_sidebar):
the site's context and rendering are Django's.

Without the sidebar, only the index and the app index pages show the list of apps, but Django's
`each_context` builds it for every admin page (`available_apps`): the 38 registered models, each asked for its
permissions, on every list and record page. `get_app_list` (Django's documented hook) hands it out lazily:
the same list, built on first use, so the pages that never read it never build it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject


class CrmAdminSite(AdminSite):
    enable_nav_sidebar = False

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> Any:
        build = super().get_app_list
        return SimpleLazyObject(lambda: build(request, app_label))


class CrmAdminConfig(AdminConfig):
    default_site = "config.admin_site.CrmAdminSite"
