"""How values are written on the admin's pages: prefecture by name, one phone format in clear and masked
views, "-" for an empty value, and decades and age bands in the user's language."""

from __future__ import annotations

import datetime as dt
import random
import re

import phonenumbers
import pytest
from django.urls import reverse
from django.utils import translation

from crm.classification import format_phone, mask_date, mask_phone
from crm.models import Customer
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def _change(client, customer: Customer) -> str:
    return client.get(reverse("admin:crm_customer_change", args=[customer.pk])).content.decode()


def _changelist(client) -> str:
    return client.get(reverse("admin:crm_customer_changelist")).content.decode()


@pytest.fixture
def oita(team):
    return CustomerFactory(team=team, prefecture="44", phone="+442079460958", birth_date=None)


def test_the_list_shows_the_prefecture_by_name_in_the_users_language(client, support_agent, oita):
    # given the support desk (clear values) and a customer in Ōita (JIS code 44)
    client.force_login(support_agent)
    # when they open the list in Japanese, then in English
    ja = _changelist(client)
    client.cookies["django_language"] = "en"
    en = _changelist(client)
    # then the prefecture is named, never shown as its code
    assert "大分県" in ja
    assert "Oita" in en
    assert not re.search(r"<td[^>]*field-col_prefecture[^>]*>44</td>", ja + en)


def test_the_page_shows_the_prefecture_by_name_read_only_and_as_a_choice(
    client, support_agent, superuser, oita
):
    # given a reader (the support desk) and an editor (the superuser)
    client.force_login(support_agent)
    read_only = _change(client, oita)
    client.force_login(superuser)
    editable = _change(client, oita)
    # then the reader sees the name, and the editor a choice of names with the customer's selected
    assert "大分県" in read_only
    assert re.search(r'<option value="44" selected>大分県</option>', editable)


def test_a_phone_is_written_alike_in_clear_and_masked(client, support_agent, teammate, customer, oita):
    # given a Japanese and a foreign number, a reader of clear values and a reader of masked values
    client.force_login(support_agent)
    clear_list, clear_page = _changelist(client), _change(client, customer) + _change(client, oita)
    client.force_login(teammate)
    masked_list = _changelist(client)
    # then Japanese numbers are in national format and foreign ones in E.164, in clear and masked alike
    assert "090-1234-5678" in clear_list and "090-1234-5678" in clear_page
    assert "+442079460958" in clear_list and "+442079460958" in clear_page
    assert "+819012345678" not in clear_list + clear_page
    assert "090-****-5678" in masked_list
    assert "+442*****0958" in masked_list


def test_the_editor_sees_the_phone_as_people_write_it_and_it_is_stored_as_e164(client, superuser, customer):
    # given the superuser on the customer's page
    client.force_login(superuser)
    # then the phone input shows the national format
    assert 'value="090-1234-5678"' in _change(client, customer)
    # and the stored value is E.164
    customer.refresh_from_db()
    assert customer.phone == "+819012345678"


def test_an_empty_value_is_a_dash_not_none(client, teammate, oita):
    # given a customer without a birth date, seen masked
    client.force_login(teammate)
    html = _change(client, oita)
    # then the empty value reads "-"
    block = re.search(r'field-masked_birth_date.*?<div class="readonly">(.*?)</div>', html, re.S)
    assert block is not None and block.group(1).strip() == "-"
    assert ">None<" not in html


def test_decades_and_age_bands_are_in_the_users_language(client, support_agent, team):
    # given an anonymised customer (age band '30代') and a masked birth date
    anonymised = CustomerFactory(team=team, family_name="x")
    Customer.objects.filter(pk=anonymised.pk).update(age_band="30代", status="anonymised")
    client.force_login(support_agent)
    client.cookies["django_language"] = "en"
    # when read in English
    html = _change(client, anonymised)
    with translation.override("en"):
        decade = mask_date(dt.date(1985, 5, 3))
    # then neither is Japanese
    assert "30代" not in html and "30s" in html
    assert decade == "1980s"


def test_format_phone_writes_what_the_parser_writes():
    # given Japanese mobile numbers (the shortcut) and other numbers (the parser)
    rng = random.Random(20261206)
    samples = [f"+81{rng.choice('789')}0{rng.randrange(10**8):08d}" for _ in range(500)]
    samples += ["+81312345678", "+81120123456", "+818001234567", "+14155552671", "+442071234567"]
    for value in samples:
        number = phonenumbers.parse(value, "JP")
        fmt = phonenumbers.PhoneNumberFormat.NATIONAL if number.country_code == 81 else "E164"
        expected = phonenumbers.format_number(number, getattr(phonenumbers.PhoneNumberFormat, str(fmt), fmt))
        # then the clear format is the parser's, and the masked one keeps the same separators
        assert format_phone(value) == expected, value
        assert [c for c in mask_phone(value) if not c.isdigit() and c != "*"] == [
            c for c in expected if not c.isdigit()
        ], value
    assert format_phone("call me") == "call me"


def test_no_label_is_printed_twice_on_an_audit_entry(client, privacy_officer, customer):
    # given an audit entry (django-auditlog labels two of its fields "change message")
    from crm.models import AuditEntry

    client.force_login(privacy_officer)
    entry = AuditEntry.objects.order_by("id").first()
    for language in ("ja", "en"):
        client.cookies["django_language"] = language
        html = client.get(reverse("admin:crm_auditentry_change", args=[entry.pk])).content.decode()
        # then every label appears once
        labels = [
            re.sub("<[^>]+>", "", x).strip() for x in re.findall(r"<label[^>]*>(.*?)</label>", html, re.S)
        ]
        assert len(labels) > 10
        assert sorted(labels) == sorted(set(labels)), language


def test_a_viewer_of_a_purpose_reads_its_wording_not_none(client, teammate):
    # given staff, who may view but not change purposes
    from consent.models import Purpose

    purpose = Purpose.objects.get(code="marketing_email")
    client.force_login(teammate)
    # when they open a purpose
    html = client.get(reverse("admin:consent_purpose_change", args=[purpose.pk])).content.decode()
    # then its current wording is shown under Japanese labels, and nothing reads "None"
    assert purpose.current_version.title_ja in html
    assert "名称（日本語）" in html and "Title ja" not in html
    assert not re.search(r">\s*None\s*<", html)


def test_consent_lists_name_the_purpose_in_the_users_language(client, support_agent, customer):
    # given a recorded consent
    from consent import services as consent_services

    consent_services.consent_grant(customer=customer, purpose_code="marketing_email", channel="paper")
    client.force_login(support_agent)
    client.cookies["django_language"] = "en"
    # when the ledger is read in English
    html = client.get(reverse("admin:consent_consentevent_changelist")).content.decode()
    # then the purpose is named in English
    assert "marketing_email (Newsletters and promotional e-mail)" in html
    assert "メールマガジン" not in html


def test_a_form_saved_as_shown_does_not_change_the_phone(client, superuser, customer):
    # given the superuser's change form, posted exactly as shown (the phone in national format)
    from django.contrib.admin.models import LogEntry

    from tests.crm.adminforms import admin_form_data

    client.force_login(superuser)
    data = admin_form_data(superuser, customer, phone="090-1234-5678", collection_channel="store_pos")
    # when it is saved
    response = client.post(reverse("admin:crm_customer_change", args=[customer.pk]), data)
    # then the history names the field that changed, not the phone, which is stored as before
    assert response.status_code == 302
    message = LogEntry.objects.filter(object_id=str(customer.pk)).latest("action_time").get_change_message()
    assert "電話番号" not in message and "取得チャネル" in message
    customer.refresh_from_db()
    assert customer.phone == "+819012345678"
