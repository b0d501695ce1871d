"""The customer changelist, rendered by Django's admin: masked values, no sidebar, the user's teams read once
and offered in the team filter."""

from __future__ import annotations

import datetime as dt

import pytest
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


def _page(client, url, language="ja"):
    response = client.get(url, headers={"Accept-Language": language})
    assert response.status_code == 200
    cl = response.context["cl"]
    return response.content.decode(), cl


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


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["owner", "outsider", "privacy_officer", "superuser"])
def test_the_team_filter_offers_exactly_the_teams_whose_customers_the_user_sees(
    client, request, team, other_team, who
):
    # given two teams, and a staff member of each, the privacy officer and a superuser
    from crm.models import Team

    user = request.getfixturevalue(who)
    client.force_login(user)
    # when the list is shown
    _html, cl = _page(client, "/admin/crm/customer/")
    # then the team filter lists the teams restrict() opens to the user, by code, with their names
    team_filter = next(f for f in cl.filter_specs if getattr(f, "parameter_name", None) == "team")
    visible = Customer.objects.restrict(user, "view")
    expected = (
        Team.objects.order_by("code")
        if visible.query.where is None or not visible.query.where.children
        else Team.objects.filter(pk__in={m.team_id for m in user.team_memberships.all()}).order_by("code")
    )
    assert team_filter.lookup_choices == [(str(t.pk), t.name) for t in expected]
    if who in ("owner", "outsider"):
        assert len(team_filter.lookup_choices) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["owner", "privacy_officer"])
def test_the_rows_are_written_by_djangos_own_changelist_template(client, request, varied_customers, who):
    # given a staff user (masked values) or the privacy officer (clear values)
    client.force_login(request.getfixturevalue(who))

    # when the list is shown
    response = client.get("/admin/crm/customer/")

    # then the rows come from Django's result_list template, one row per customer, linked to its page
    assert response.status_code == 200
    used = [t.name for t in response.templates]
    assert "admin/change_list_results.html" in used
    assert not any(name.startswith("admin/crm/customer_change_list_results") for name in used)
    html = response.content.decode()
    for customer in varied_customers:
        assert f'href="/admin/crm/customer/{customer.pk}/change/' in html
    # and the refused user is still refused
    client.force_login(request.getfixturevalue("outsider"))
    assert all(
        f"/admin/crm/customer/{c.pk}/change/" not in client.get("/admin/crm/customer/").content.decode()
        for c in varied_customers
    )
