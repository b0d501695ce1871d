"""The customer changelist builds its rows in one pass (CustomerAdmin.result_rows): the HTML must be exactly
what Django's own items_for_result writes, for every column, user kind and filter state."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.admin.templatetags.admin_list import items_for_result
from django.utils import timezone

from crm.models import Customer
from tests.factories import CustomerFactory


@pytest.fixture
def varied_customers(team):
    # given customers with empty optional fields, other statuses and a last activity (or none)
    made = [
        CustomerFactory(team=team),
        CustomerFactory(team=team, email="", phone="", given_name=""),
        CustomerFactory(team=team, family_name="O'Brien & <Co>", member_no=None),
    ]
    Customer.objects.filter(pk=made[0].pk).update(
        last_activity_at=timezone.make_aware(dt.datetime(2026, 3, 31, 23, 59))
    )
    Customer.objects.filter(pk=made[1].pk).update(status=Customer.Status.STOP_USE)
    return made


def _page(client, url):
    response = client.get(url)
    assert response.status_code == 200
    cl = response.context["cl"]
    return response.content.decode(), cl


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["owner", "privacy_officer"])
@pytest.mark.parametrize("query", ["", "?status=stop_use", "?o=1"])
def test_rows_are_the_html_django_would_write(client, request, varied_customers, who, query):
    # given a user who sees masked values (staff) or clear ones (privacy officer), and a filter or sort
    client.force_login(request.getfixturevalue(who))

    # when the changelist is shown
    html, cl = _page(client, f"/admin/crm/customer/{query}")

    # then each row is, character for character, what the stock renderer makes of the same objects
    ours = list(cl.model_admin.result_rows(cl))
    stock = ["".join(items_for_result(cl, obj, None)) for obj in cl.result_list]
    assert ours == stock
    assert len(ours) == len(cl.result_list) > 0
    # and the page prints them
    assert all(row in html for row in ours)


@pytest.mark.django_db
def test_a_masked_row_keeps_clear_values_out_and_escapes_markup(client, owner, varied_customers):
    # given a staff user without 'view personal data'
    client.force_login(owner)

    # when the list is shown
    html, _cl = _page(client, "/admin/crm/customer/")

    # then no clear e-mail is in it, and a name with markup characters is escaped, never raw
    assert varied_customers[0].email not in html
    assert "<Co>" not in html


@pytest.mark.django_db
def test_admin_pages_carry_no_sidebar_while_the_index_still_lists_every_app(client, privacy_officer):
    # given the privacy officer, who may open many models
    client.force_login(privacy_officer)

    # when a list page and the index are shown
    listing, _cl = _page(client, "/admin/crm/customer/")
    index = client.get("/admin/").content.decode()

    # then the list page has no navigation sidebar (config.admin_site), and the index links the models
    assert 'id="nav-sidebar"' not in listing
    assert "/admin/crm/customer/" in index and "/admin/consent/" in index


@pytest.mark.django_db
def test_a_staff_list_page_asks_for_the_users_teams_once(client, owner, outsider, varied_customers):
    # given a staff user of one team (the list, its team filter and the add button all need the teams)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(owner)

    # when the list is shown
    with CaptureQueriesContext(connection) as ctx:
        _html, cl = _page(client, "/admin/crm/customer/")

    # then the team permissions are read in one statement, and still only the own team's rows are listed
    team_reads = [q for q in ctx.captured_queries if "crm_teamuserobjectpermission" in q["sql"]]
    assert len(team_reads) == 1
    assert {c.team_id for c in cl.result_list} == {owner.team_memberships.first().team_id}
