"""Masking: without 'view personal data' (crm.view_customer_pii) the admin shows masked values and never the
clear ones, in the list and on the change page; with it, clear values. Plus the mask functions' edge cases
and the list's scale rules (bounded count, no LIKE, no per-row query)."""

from __future__ import annotations

import datetime as dt
import re

import phonenumbers
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.admin import PERSONAL
from crm.classification import (
    mask_date,
    mask_email,
    mask_full,
    mask_name,
    mask_phone,
    mask_postal,
    mask_value,
)
from tests.crm.adminforms import admin_form_data
from tests.factories import STANDING_CUSTOMER_PHONE_AND_NAMES, CustomerFactory
from tests.services import is_audit_id_reservation

CLEAR = [
    "taro.yamada@example.com",
    "Taro.Yamada",
    *STANDING_CUSTOMER_PHONE_AND_NAMES,
    "M000000001",
    "千代田区丸の内",
]
MASKED_IN_LIST = ["ta***@example.com", "090-****-5678", "山* 太*"]


def _html(response) -> str:
    assert response.status_code == 200
    return response.content.decode()


def _leaks(html: str, values: list[str]) -> list[str]:
    return [v for v in values if v in html]


# --- the mask functions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("taro.yamada@example.com", "ta***@example.com"),
        ("abc@example.com", "a***@example.com"),  # short local part: one character
        ("ab@example.com", "a***@example.com"),
        ("a@example.com", "***@example.com"),  # one character: nothing of it
        ("not-an-address", "***"),
        ("@example.com", "***"),
        ('"odd@local"@example.com', '"o***@example.com'),  # the domain is after the last @
    ],
)
def test_mask_email(value, masked):
    # given an e-mail address, when masked, then at most two characters of the local part show
    assert mask_email(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+819012345678", "090-****-5678"),
        ("+81312345678", "03-1***-5678"),
        ("+442079460958", "+442*****0958"),  # abroad: E.164 keeps the country
        ("1234567", "*****67"),  # short: at most a third of the digits
        ("110", "**0"),
        ("call me", "****"),  # not a number at all: nothing shows
    ],
)
def test_mask_phone(value, masked):
    # given a phone number, when masked, then the middle is hidden and short numbers show little
    assert mask_phone(value) == masked


E164_SAMPLES = [
    "+819012345678",
    "+818012345678",
    "+817012345678",
    "+81312345678",
    "+81612345678",
    "+81451234567",
    "+81120123456",
    "+81570123456",
    "+81112345678",
    "+81126712345",
    "+8150123456789",
    "+14155552671",
    "+12025550123",
    "+442071234567",
    "+447911123456",
    "+33123456789",
    "+4930123456",
    "+8613812345678",
    "+85212345678",
    "+6591234567",
    "+61212345678",
    "+82212345678",
    "+390612345678",
    "+79123456789",
    "+999123",
    "+",
    "+81",
    "+81abc",
    "+８１9012345678",
]


@pytest.mark.parametrize("value", E164_SAMPLES)
def test_the_e164_shortcut_masks_exactly_as_the_full_parser(value):
    # given a stored E.164 value (or something that only looks like one), when masked through the shortcut,
    # then the result is the one of phonenumbers.parse() (the shortcut declines what it cannot do exactly)
    from crm import classification

    number = classification._e164(value)
    if number is not None:
        assert number == phonenumbers.parse(value, "JP")
    assert mask_phone(value) == _mask_phone_by_parsing(value)


def test_japanese_mobile_numbers_mask_as_the_full_parser_writes_them():
    # given Japanese mobile numbers of every prefix (070, 080, 090), the extremes and random ones
    import random

    rng = random.Random(20261126)
    samples = [f"+81{p}0{n:08d}" for p in "789" for n in (0, 99_999_999, 12_345_678)]
    # every four-digit start (0800 free dial included), each with a random rest
    samples += [f"+81{p}0{head:02d}{rng.randrange(10**6):06d}" for p in "789" for head in range(100)]
    samples += [f"+81{rng.choice('789')}0{rng.randrange(10**8):08d}" for _ in range(3000)]
    # then the shortcut writes what formatting the parsed number writes
    for value in samples:
        assert mask_phone(value) == _mask_phone_by_parsing(value), value


def _mask_phone_by_parsing(value):
    """mask_phone with no shortcut at all: phonenumbers.parse() and its national/E.164 format."""
    from unittest import mock

    from crm import classification

    with mock.patch.object(classification, "_e164", return_value=None):
        return classification._mask_formatted_phone(value)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("山田 太郎", "山* 太*"),
        ("山田　太郎", "山* 太*"),  # full-width space
        ("長谷川 一", "長* 一*"),  # one '*' whatever the length: the length is not shown
        ("ヤマダ タロウ", "ヤ* タ*"),
        ("Smith", "S*"),
    ],
)
def test_mask_name(value, masked):
    # given a name, when masked, then each part keeps its first character only
    assert mask_name(value) == masked


def test_mask_other_values():
    # given the other maskers, then they hide all but a coarse hint
    assert mask_postal("100-0005") == "1**-****"
    assert mask_date(dt.date(1985, 5, 3)) == "1980年代"
    assert mask_date("1985-05-03") == "****"
    assert mask_full("千代田区丸の内1-1-1") == "****"
    assert mask_full(False) == "****"
    assert mask_full({}) == ""


def test_mask_value_follows_the_registry():
    # given fields of the customer registry
    # then personal values are masked, empty ones stay empty, non-personal ones are untouched
    assert mask_value("crm.Customer", "email", "taro.yamada@example.com") == "ta***@example.com"
    assert mask_value("crm.Customer", "preferences", {"dm": True}) == "****"
    assert mask_value("crm.Customer", "preferences", {}) == {}
    assert mask_value("crm.Customer", "email", "") == ""
    assert mask_value("crm.Customer", "status", "active") == "active"
    assert mask_value("crm.Customer", "no_such_field", "x") == "x"


def test_the_admin_knows_every_personal_field():
    # given the admin module (imported before the app registry is ready)
    # then its list of personal fields is the registry's, not an empty one
    assert {"family_name", "email", "phone", "address", "birth_date", "notes", "preferences"} <= set(PERSONAL)


# --- the changelist ----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("user_name", ["owner", "teammate"])
def test_changelist_is_masked_without_the_permission(client, request, customer, user_name):
    # given staff of the customer's team, without 'view personal data'
    client.force_login(request.getfixturevalue(user_name))
    # when they open the customer list
    html = _html(client.get(reverse("admin:crm_customer_changelist")))
    # then masked values are shown and no clear value is anywhere in the page
    for masked in MASKED_IN_LIST:
        assert masked in html
    assert not _leaks(html, CLEAR)


@pytest.mark.django_db
@pytest.mark.parametrize("user_name", ["support_agent", "privacy_officer", "superuser"])
def test_changelist_is_clear_with_the_permission(client, request, customer, user_name):
    # given a user holding 'view personal data'
    client.force_login(request.getfixturevalue(user_name))
    # when they open the customer list
    html = _html(client.get(reverse("admin:crm_customer_changelist")))
    # then the clear values are shown (the phone as people write it)
    for clear in ("taro.yamada@example.com", "090-1234-5678", "山田 太郎", "M000000001"):
        assert clear in html
    assert "ta***@example.com" not in html


def _list_headings(html: str) -> list[str]:
    head = html.partition('<table id="result_list">')[2].partition("</thead>")[0]
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<th[^>]*>(.*?)</th>", head, re.S)]


@pytest.mark.django_db
@pytest.mark.parametrize(("user_name", "pii"), [("owner", False), ("privacy_officer", True)])
def test_changelist_leaves_out_columns_that_would_show_only_a_mask(client, request, customer, user_name, pii):
    # given a user without 'view personal data' (the owner) and one with it (the privacy officer)
    client.force_login(request.getfixturevalue(user_name))
    # when they open the customer list
    headings = _list_headings(_html(client.get(reverse("admin:crm_customer_changelist"))))
    # then the name is one column for both; the member number and the prefecture, masked in full ('****')
    # for the first, are columns only for the second
    assert "氏名" in headings
    assert ("会員番号" in headings) is pii
    assert ("都道府県" in headings) is pii
    assert {"メールアドレス", "電話番号", "担当チーム", "状態"} <= set(headings)


@pytest.mark.django_db
def test_search_finds_by_exact_email_and_stays_masked(client, owner, customer, team):
    # given the owner and a second customer in the team
    other = CustomerFactory(team=team, email="someone.else@example.com")
    client.force_login(owner)
    # when they search by the customer's e-mail (any case)
    html = _html(client.get(reverse("admin:crm_customer_changelist"), {"q": "TARO.YAMADA@example.com"}))
    # then only that customer is listed, still masked
    assert reverse("admin:crm_customer_change", args=[customer.pk]) in html
    assert reverse("admin:crm_customer_change", args=[other.pk]) not in html
    assert "ta***@example.com" in html


def _changelist_queries(client, params: dict[str, str] | None = None) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        _html(client.get(reverse("admin:crm_customer_changelist"), params or {}))
    return [q["sql"] for q in ctx.captured_queries if not is_audit_id_reservation(q["sql"])]


@pytest.mark.django_db
@pytest.mark.parametrize("user_name", ["owner", "superuser"])
def test_changelist_queries_do_not_grow_with_rows_count_or_scan(client, request, team, user_name):
    # given a list of 3 customers, then of 25
    client.force_login(request.getfixturevalue(user_name))
    CustomerFactory.create_batch(3, team=team)
    _changelist_queries(client)  # warm the session and content-type caches
    few = _changelist_queries(client)
    CustomerFactory.create_batch(22, team=team)
    many = _changelist_queries(client)
    searched = _changelist_queries(client, {"q": "山田 太郎"})

    # then the number of queries is the same (no per-row query) …
    assert len(many) == len(few)
    # … a first page shorter than list_per_page is counted from its rows: no count query at all …
    assert not [q for q in many + searched if "COUNT(" in q.upper() or "RELTUPLES" in q.upper()]
    # … and no search uses LIKE (a full scan on ciphertext)
    assert not [q for q in searched if " LIKE " in q.upper()]


@pytest.mark.django_db
def test_a_full_first_page_is_counted_with_a_bound_and_read_once(client, owner, team):
    # given more customers than one page holds
    from crm.admin import CustomerAdmin

    CustomerFactory.create_batch(CustomerAdmin.list_per_page + 2, team=team)
    client.force_login(owner)
    _changelist_queries(client)
    # when the list is shown
    queries = _changelist_queries(client)
    response = client.get(reverse("admin:crm_customer_changelist"))
    # then the count is bounded (LIMIT) or the planner's, never COUNT(*) over the table …
    counts = [q for q in queries if "COUNT(" in q.upper()]
    assert counts
    assert all("LIMIT" in q.upper() for q in counts)
    # … the page's rows are read once, and the page knows there is a second page
    pages = [q for q in queries if '"crm_customer"."family_name"' in q and q.upper().startswith("SELECT")]
    assert len(pages) == 1
    cl = response.context["cl"]
    assert cl.result_count == CustomerAdmin.list_per_page + 2
    assert cl.multi_page
    assert len(cl.result_list) == CustomerAdmin.list_per_page


# --- the change page ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("user_name", ["owner", "teammate"])
def test_change_page_is_masked_and_read_only_without_the_permission(client, request, customer, user_name):
    # given staff of the customer's team without 'view personal data'
    client.force_login(request.getfixturevalue(user_name))
    # when they open the customer
    response = client.get(reverse("admin:crm_customer_change", args=[customer.pk]))
    html = _html(response)
    # then personal values are shown masked, read-only (no input), and never in clear
    assert "ta***@example.com" in html
    assert "090-****-5678" in html
    assert "山*" in html
    assert not _leaks(html, CLEAR)
    form_fields = set(response.context["adminform"].form.fields)
    assert not form_fields & set(PERSONAL)
    assert "collection_channel" in form_fields  # what they may change stays editable


@pytest.mark.django_db
def test_masked_staff_cannot_overwrite_personal_values(client, owner, superuser, customer):
    # given the owner posting a form that carries personal fields anyway
    client.force_login(owner)
    data = admin_form_data(
        superuser, customer, email="evil@example.com", family_name="偽名", collection_channel="store_pos"
    )
    # when the change is saved
    response = client.post(reverse("admin:crm_customer_change", args=[customer.pk]), data)
    # then what they may change is saved, and the personal values they cannot see are untouched
    assert response.status_code == 302
    customer.refresh_from_db()
    assert (customer.collection_channel, customer.email, customer.family_name) == (
        "store_pos",
        "taro.yamada@example.com",
        "山田",
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("user_name", "editable"), [("support_agent", False), ("superuser", True)])
def test_change_page_is_clear_with_the_permission(client, request, customer, user_name, editable):
    # given a user holding 'view personal data'
    client.force_login(request.getfixturevalue(user_name))
    # when they open the customer
    response = client.get(reverse("admin:crm_customer_change", args=[customer.pk]))
    html = _html(response)
    # then the clear values are shown (as inputs only for those who may change them)
    assert "taro.yamada@example.com" in html
    assert "山田" in html
    assert "ta***@example.com" not in html
    assert ('name="email"' in html) is editable
