"""The admin site: Django's, with the list of apps built only by pages that show it (config.admin_site)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.admin import AdminSite
from django.urls import reverse

pytestmark = pytest.mark.django_db


def _built():
    """Django's own get_app_list, watched: the lazy list of config.admin_site calls it when first read."""
    return mock.patch.object(AdminSite, "get_app_list", autospec=True, side_effect=AdminSite.get_app_list)


def test_a_list_page_does_not_build_the_list_of_apps(client, owner, customer):
    # given a member of staff on the customer list (no navigation sidebar: the page shows no app list)
    client.force_login(owner)
    with _built() as built:
        # when they open it
        response = client.get(reverse("admin:crm_customer_changelist"))
    # then the page is there and the list of every app and model was never built for it
    assert response.status_code == 200
    assert built.call_count == 0


def test_the_index_still_lists_the_apps_the_user_may_see(client, privacy_officer):
    # given the privacy officer on the admin's index page
    client.force_login(privacy_officer)
    with _built() as built:
        response = client.get(reverse("admin:index"))
    # then the list is built once and shows the customer admin
    assert response.status_code == 200
    assert built.call_count == 1
    assert reverse("admin:crm_customer_changelist") in response.content.decode()


def test_an_app_index_is_shown_and_an_unknown_one_is_not_found(client, privacy_officer):
    # given the privacy officer
    client.force_login(privacy_officer)
    # when they open crm's app index, then that of an app with no admin pages
    shown = client.get(reverse("admin:app_list", kwargs={"app_label": "crm"}))
    missing = client.get("/admin/sessions/")
    # then the first lists crm's models, the second is a 404 (Django's own check of an empty list)
    assert shown.status_code == 200
    assert reverse("admin:crm_customer_changelist") in shown.content.decode()
    assert missing.status_code == 404
