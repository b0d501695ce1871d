"""The customer changelist builds its rows in one pass (CustomerAdmin.result_rows): the HTML must be exactly
what Django's own items_for_result writes, for every column, user kind and filter state."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.admin.templatetags.admin_list import items_for_result
from django.utils import timezone, translation
from django.utils.dateformat import format as django_date_format
from django.utils.formats import get_format

from crm.admin import compiled_date_format
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
@pytest.mark.parametrize("who", ["owner", "privacy_officer"])
@pytest.mark.parametrize("query", ["", "?status=stop_use", "?o=1"])
@pytest.mark.parametrize("language", ["ja", "en"])
def test_rows_are_the_html_django_would_write(client, request, varied_customers, who, query, language):
    # given a user who sees masked values (staff) or clear ones (privacy officer), a filter or sort, and
    # the page in Japanese (dates through the fast path) or English (Django's own date formatting)
    client.force_login(request.getfixturevalue(who))

    # when the changelist is shown
    html, cl = _page(client, f"/admin/crm/customer/{query}", language)

    # then each row is, character for character, what the stock renderer makes of the same objects
    with translation.override(language):
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


MOMENTS = [
    dt.datetime(2026, 1, 2, 3, 4, 5),
    dt.datetime(2026, 12, 31, 23, 59, 59),
    dt.datetime(2000, 10, 10, 0, 0, 0),
    dt.datetime(999, 7, 1, 12, 30, 0),
]


@pytest.mark.parametrize("fmt", ["Y年n月j日G:i", "Y-m-d H:i:s", "y/n/j G時i分", r"Y\Y n\n", "j.n.Y"])
def test_compiled_date_formats_write_what_django_writes(fmt):
    # given a format the fast path handles, then every moment is written exactly as Django writes it
    write = compiled_date_format(fmt)
    assert write is not None
    for moment in MOMENTS:
        assert write(moment) == django_date_format(moment, fmt), moment


@pytest.mark.parametrize("fmt", ["N j, Y, P", "D, j M Y", "Y年n月j日 A", "trailing\\", r"Y\\Y"])
def test_formats_with_names_or_am_pm_are_left_to_django(fmt):
    # given a format with month or day names, am/pm, a dangling or doubled escape: the fast path declines it
    assert compiled_date_format(fmt) is None


def test_the_japanese_datetime_format_takes_the_fast_path():
    assert compiled_date_format(str(get_format("DATETIME_FORMAT", lang="ja"))) is not None


@pytest.mark.parametrize("debug", [False, True])
def test_the_admin_scripts_rendered_once_are_djangos(settings, debug):
    # given DEBUG on or off (full or minified scripts)
    from django.contrib import admin

    from crm.admin import CustomerAdmin

    settings.DEBUG = debug
    # then the customer admin's media is the stock ModelAdmin's, rendered identically, twice over
    ours = CustomerAdmin(Customer, admin.site).media
    stock = admin.ModelAdmin(Customer, admin.site).media
    assert str(ours) == str(stock) == str(ours)
    assert str(ours["js"]) == str(stock["js"]) == str(ours["js"])  # `{{ media.js }}` of the template
    assert str(ours["css"]) == str(stock["css"])
    # and it still combines with a form's media as Media does
    assert str(ours + stock) == str(stock + stock)
