"""The disclosure package's registry and writer (crm.disclosure): complete against the classification
registry, one query per section, readable in Japanese and English, and a package that says so when nothing is
held about the person."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from consent import services as consent_services
from consent.provision import rules as provision_rules
from consent.provision import services as provision_services
from consent.provision.models import Recipient
from consent.requests.models import DataSubjectRequest
from crm.classification import REGISTRY, DataClass, FieldSpec
from crm.disclosure import ModelSection, disclosure_sections, json_value
from crm.disclosure.package import disclosure_package_write
from crm.models import Customer, CustomerEvent, Purchase
from crm.retention import services as retention
from tests.factories import CustomerFactory, analytics_scores_for

pytestmark = pytest.mark.django_db

AS_OF = dt.datetime(2026, 5, 1, 1, 0, tzinfo=dt.UTC)
WHEN = dt.datetime(2026, 4, 1, 10, 0, tzinfo=dt.UTC)


def _person(team: Any, officer: Any) -> Customer:
    """A customer with a row in every model pointing to customers that holds personal fields."""
    customer = CustomerFactory(
        team=team,
        gender="female",
        birth_date=dt.date(1985, 4, 12),
        notes="<b>夕方希望</b>",
        acquisition_note="店頭アンケート",
        preferences={"newsletter": True},
        app_user_id="APP-1",
        device_id="DEV-1",
        pos_card_no="POS-1",
        external_id="EXT-1",
    )
    CustomerEvent.objects.create(
        customer=customer, visitor_id="VIS-ev", kind="page_view", occurred_at=WHEN, properties={"q": "靴"}
    )
    Purchase.objects.create(
        customer=customer, team=team, order_no="ORD-1", amount=Decimal("1980"), channel="web_form",
        purchased_at=WHEN,
    )  # fmt: skip
    evidence = {"source_ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (probe)", "form_id": "F-1"}
    consent_services.consent_record(
        purpose_code="analytics", action="grant", method="opt_in", channel="cookie_banner",
        visitor_id="VIS-1", evidence=evidence, occurred_at=WHEN,
    )  # fmt: skip
    consent_services.visitor_link(visitor_id="VIS-1", customer=customer)
    consent_services.consent_grant(
        customer=customer, purpose_code="special_care_health", channel="web_form", evidence=evidence
    )
    consent_services.special_care_record_create(
        customer=customer,
        purpose_code="special_care_health",
        kind="medical_history",
        content="小麦アレルギー",
    )
    consent_services.objection_record(customer=customer, scope="direct_marketing", source="admin")
    retention.legal_hold_place(
        customer_ids=[customer.pk], reason="litigation", placed_by=officer, note="備考"
    )
    # scores computed about the person (profiling, GDPR 15(1)(h))
    analytics_scores_for(customer, WHEN.date())
    # APPI 33(5): the records of provision to a third party and of receipt from one that name the person
    partner = Recipient.objects.create(
        name="提携ポイント株式会社", kind=Recipient.Kind.THIRD_PARTY, country="JP"
    )
    provision_services.provision_record(
        actor=officer, recipient=partner, customer_ids=[customer.pk], data_items=["crm.Customer.email"],
        basis=provision_rules.BASIS_OPT_OUT, opt_out_notified_on=dt.date(2026, 1, 5), on=dt.date(2026, 4, 1),
    )  # fmt: skip
    provision_services.receipt_record(
        actor=officer, provider_name="提供元株式会社", provider_address="東京都港区1-1",
        acquisition="自社の会員登録で取得", customer_ids=[customer.pk], data_items=["crm.Customer.email"],
        basis="consent", received_on=dt.date(2026, 3, 1),
    )  # fmt: skip
    DataSubjectRequest.objects.create(
        kind="disclosure", channel="email", received_at=WHEN, customer=customer, requester_name="山田 花子",
        requester_email="hanako@example.com", requester_phone="+819011112222", requester_member_no="M1",
        details="全部見せてください",
    )  # fmt: skip
    return customer


def _build(customer_id: int | None, language: str = "ja") -> tuple[dict[str, Any], zipfile.ZipFile]:
    buf = io.BytesIO()
    disclosure_package_write(
        out=buf, customer_id=customer_id, language=language, as_of=AS_OF, reference="REQ-1"
    )
    zf = zipfile.ZipFile(buf)
    return json.loads(zf.read("disclosure.json")), zf


def _models_pointing_at_customers() -> list[tuple[type[Any], str]]:
    out: list[tuple[type[Any], str]] = [(Customer, "pk")]
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if field.is_relation and field.related_model is Customer:
                out.append((model, field.name))
    return out


def _models_naming_customers() -> list[tuple[type[Any], str]]:
    """Models that name people through a link table (a many-to-many to customers): records such as the
    third-party provision and receipt records, which a disclosure must list whether or not they hold a
    personal field themselves (APPI 33(5))."""
    return [
        (model, field.name)
        for model in apps.get_models()
        for field in model._meta.many_to_many
        if field.related_model is Customer
    ]


def test_every_personal_field_of_every_model_pointing_to_a_customer_is_in_the_package(team, privacy_officer):
    # given a person with rows in every model that points to customers
    customer = _person(team, privacy_officer)
    # when their package is built
    package, _zf = _build(customer.pk)
    sections = {s["key"]: s for s in package["sections"]}
    # then for every model pointing to customers, every field the registry declares personal is a column of
    # a section of that model, and its rows carry the person's values decrypted
    missing = []
    for model, path in _models_pointing_at_customers():
        personal = REGISTRY.personal_fields(model._meta.label)
        if not personal:
            continue
        covering = [
            s for s in disclosure_sections() if isinstance(s, ModelSection) and s.model_class() is model
        ]
        if not covering:
            missing.append(model._meta.label)
            continue
        section = sections[covering[0].key]
        assert {c["name"] for c in section["columns"]} >= set(personal), model._meta.label
        rows = list(model._default_manager.filter(**{path: customer.pk}).order_by(*covering[0].order_by))
        assert rows, f"seed a row of {model._meta.label} for the person"
        assert section["count"] == len(rows)
        for instance, row in zip(rows, section["rows"], strict=True):
            for name in personal:
                value = getattr(instance, model._meta.get_field(name).attname)
                assert row[name] == json_value(value), (model._meta.label, name)
    assert missing == []
    # and every record that names the person through a link (provision and receipt records, APPI 33(5)) is
    # a section listing exactly the person's records
    for model, path in _models_naming_customers():
        covering = [
            s for s in disclosure_sections() if isinstance(s, ModelSection) and s.model_class() is model
        ]
        assert covering, f"{model._meta.label} names people but is in no section of the package"
        expected = list(model._default_manager.filter(**{path: customer.pk}).values_list("pk", flat=True))
        assert expected, f"seed a row of {model._meta.label} for the person"
        assert [r["id"] for r in sections[covering[0].key]["rows"]] == expected
    provided = sections["consent.provisions"]["rows"]
    assert provided[0]["recipient__name"] == "提携ポイント株式会社"
    assert provided[0]["data_items"] == ["crm.Customer.email"]
    assert sections["consent.receipts"]["rows"][0]["acquisition"] == "自社の会員登録で取得"
    assert package["has_data"] is True
    # and the encrypted values are there in clear
    customer_row = sections["crm.customer"]["rows"][0]
    assert customer_row["email"] == customer.email and customer_row["birth_date"] == "1985-04-12"
    assert sections["consent.special_care"]["rows"][0]["content"] == "小麦アレルギー"


def test_a_field_declared_personal_later_appears_without_touching_the_export_code(team, monkeypatch):
    # given a customer, and a field of a registered model that is not personal today
    customer = CustomerFactory(team=team, collection_channel=Customer.Channel.STORE_POS)
    package, _zf = _build(customer.pk)
    columns = {c["name"] for c in {s["key"]: s for s in package["sections"]}["crm.customer"]["columns"]}
    assert "collection_channel" not in columns
    # when the registry declares it personal
    spec = FieldSpec(
        DataClass.ATTRIBUTE, ("customer_management",), "customer_profile", "full", "取得チャネル"
    )
    monkeypatch.setitem(REGISTRY.models["crm.Customer"], "collection_channel", spec)
    # then the next package carries it
    package, _zf = _build(customer.pk)
    section = {s["key"]: s for s in package["sections"]}["crm.customer"]
    assert "collection_channel" in {c["name"] for c in section["columns"]}
    assert section["rows"][0]["collection_channel"] == "store_pos"


def test_a_person_with_no_data_gets_a_package_that_says_so(db):
    # given nobody matched the request
    # when the package is built in Japanese and in English
    package, zf = _build(None, "ja")
    _en, zf_en = _build(None, "en")
    # then it says that no data is held, and still lists the published purposes
    assert package["has_data"] is False
    by_key = {s["key"]: s for s in package["sections"]}
    assert all(s["count"] == 0 for s in package["sections"] if s["about_person"])
    assert by_key["consent.purposes"]["count"] > 0
    assert "保有個人データを保有していません" in zf.read("disclosure.html").decode()
    assert "We do not hold any personal data about you" in zf_en.read("disclosure.html").decode()


def test_the_page_is_in_the_requesters_language_without_inline_script_or_style(team, privacy_officer):
    # given a person whose free-text note holds markup
    customer = _person(team, privacy_officer)
    # when the package is built in English
    package, zf = _build(customer.pk, "en")
    page = zf.read("disclosure.html").decode()
    # then the page is English, escapes the person's text, and has no script or inline style (CSP)
    assert '<html lang="en">' in page and "Disclosure of retained personal data" in page
    assert "&lt;b&gt;夕方希望&lt;/b&gt;" in page and "<b>夕方希望" not in page
    assert "<script" not in page.lower() and "style=" not in page.lower() and "<style" not in page.lower()
    assert '<link rel="stylesheet" href="style.css">' in page and "style.css" in zf.namelist()
    assert {s["title"] for s in package["sections"]} >= {
        "Customer record",
        "Purposes of use (published texts)",
    }


def test_each_section_is_one_csv_with_its_columns_and_rows(team, privacy_officer):
    # given a person with data
    customer = _person(team, privacy_officer)
    # when the package is built
    package, zf = _build(customer.pk)
    # then each section has its CSV: a header of its column names and one line per row
    for section in package["sections"]:
        text = zf.read(f"csv/{section['key']}.csv").decode("utf-8-sig")
        lines = list(csv.reader(io.StringIO(text)))
        assert lines[0] == [c["name"] for c in section["columns"]]
        assert len(lines) - 1 == section["count"]
    events = list(csv.DictReader(io.StringIO(zf.read("csv/crm.events.csv").decode("utf-8-sig"))))
    assert json.loads(events[0]["properties"]) == {"q": "靴"}
    assert events[0]["occurred_at"] == "2026-04-01T19:00:00+09:00"


@pytest.mark.parametrize("events", [3, 60])
def test_the_sections_are_read_with_a_number_of_queries_that_does_not_grow_with_the_rows(team, events):
    # given a customer with a few or many events and purchases
    customer = CustomerFactory(team=team)
    CustomerEvent.objects.bulk_create(
        CustomerEvent(customer=customer, kind="page_view", occurred_at=WHEN, properties={"n": i})
        for i in range(events)
    )
    # when the package is built
    with CaptureQueriesContext(connection) as queries:
        package, _zf = _build(customer.pk)
    # then every section is read once (the sources summary with three small aggregates): no N+1
    assert {s["key"]: s["count"] for s in package["sections"]}["crm.events"] == events
    assert len(queries) <= len(disclosure_sections()) + 2
