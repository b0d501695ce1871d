"""Security probe: after a customer is erased, nothing of the person decrypts anywhere.

Replays "erasure leaving nothing decryptable": a person with a value in every place our apps keep personal
data (profile, events, purchases, consents given as an anonymous visitor and as a customer with their source
address and browser, a linked cookie id, 要配慮 data), erased by the request desk or by a retention run.
Then the classification registry is walked: every registered personal field (and keyed hash) of every model,
every row, decrypted where encrypted, must hold nothing of theirs. The only survivors are the ones the law
asks for (statutory tax records), which must no longer point at the person. The audit trail is read too.
A new model pointing at customers with personal fields and no row seeded here fails the coverage check, so
the probe grows with the schema.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.db import connection

from consent import services as consent_services
from consent.models import ConsentEvent, DataSubjectRequest
from crm.classification import REGISTRY, DataClass
from crm.crypto import DecryptionError, decrypt_str
from crm.fields import _EncryptedMixin
from crm.models import AuditEntry, Customer, CustomerEvent, Purchase
from crm.retention import services as retention
from crm.retention.models import RetentionPolicy
from tests.factories import CustomerFactory, analytics_scores_for

pytestmark = pytest.mark.django_db

WHEN = dt.datetime(2026, 4, 1, 10, 0, tzinfo=dt.UTC)
# Values only this person has: each is searched for as a substring of every stored value.
THEIRS = {
    "family_name": "消去検証",
    "given_name": "太郎丸",
    "family_name_kana": "ショウキョケンショウ",
    "given_name_kana": "タロウマル",
    "email": "erase.probe.7f3@example.com",
    "phone": "090-7733-0123",
    "postal_code": "100-0001",
    "address": "千代田区千代田1-1 消去検証ビル7F3",
    "birth_date": dt.date(1985, 4, 12),
    "member_no": "MERASE7F3",
    "external_id": "EXT-ERASE-7F3",
    "app_user_id": "APP-ERASE-7F3",
    "device_id": "DEV-ERASE-7F3",
    "pos_card_no": "POS-ERASE-7F3",
    "notes": "NOTE-ERASE-7F3 電話では夕方を希望",
    "acquisition_note": "ACQ-ERASE-7F3 店頭アンケート",
    "preferences": {"newsletter": True, "memo": "PREF-ERASE-7F3"},
}
VISITOR = "VIS-ERASE-7F3"
SOURCE_IP = "203.0.113.173"
USER_AGENT = "Mozilla/5.0 (UA-ERASE-7F3)"
EVENT_MARK = "PROP-ERASE-7F3"
ORDER_NO = "ORD-ERASE-7F3"
HEALTH = "SC-ERASE-7F3 小麦アレルギー"
HOLD_NOTE = "HOLD-ERASE-7F3 消去検証様の訴訟"


def _person(team, officer) -> tuple[Customer, set[str]]:
    """The person, with something of theirs in every model that holds personal data about a customer.
    Returns the customer and the strings that are theirs (as typed, as normalised, and their keyed hashes)."""
    customer = CustomerFactory(team=team, prefecture="13", gender="female", **THEIRS)
    # behaviour, a purchase (a tax record), consents with evidence, a linked cookie id, 要配慮 data
    CustomerEvent.objects.create(
        customer=customer, visitor_id=f"{VISITOR}-ev", kind="page_view", occurred_at=WHEN,
        properties={"q": EVENT_MARK},
    )  # fmt: skip
    Purchase.objects.create(
        customer=customer, team=team, order_no=ORDER_NO, amount=Decimal("1980"), channel="web_form",
        purchased_at=WHEN,
    )  # fmt: skip
    # scores computed about them (RFM, CLV)
    analytics_scores_for(customer, WHEN.date())
    # a disclosure request of theirs answered earlier: its record stays, their identifiers go with them
    answered = DataSubjectRequest.objects.create(
        customer=customer, kind="disclosure", channel="phone", received_at=WHEN, due_on=WHEN.date(),
        requester_name=f"{THEIRS['family_name']} {THEIRS['given_name']}", requester_email=THEIRS["email"],
        requester_phone=THEIRS["phone"], details=f"{THEIRS['family_name']}の開示請求",
    )  # fmt: skip
    DataSubjectRequest.objects.filter(pk=answered.pk).update(state="completed", closed_at=WHEN)
    # an event recorded for their cookie id before they were identified (no customer on it)
    CustomerEvent.objects.create(visitor_id=VISITOR, kind="page_view", occurred_at=WHEN, properties={})
    evidence = {"source_ip": SOURCE_IP, "user_agent": USER_AGENT, "form_id": "F-PROBE"}
    consent_services.consent_record(
        purpose_code="analytics", action="grant", method="opt_in", channel="cookie_banner",
        visitor_id=VISITOR, evidence=evidence, occurred_at=WHEN,
    )  # fmt: skip
    consent_services.visitor_link(visitor_id=VISITOR, customer=customer)
    consent_services.consent_grant(
        customer=customer, purpose_code="special_care_health", channel="web_form", evidence=evidence
    )
    consent_services.consent_withdraw(
        customer=customer, purpose_code="marketing_email", channel="web_form", evidence=evidence
    )
    consent_services.special_care_record_create(
        customer=customer, purpose_code="special_care_health", kind="medical_history", content=HEALTH
    )
    # an objection to direct marketing (GDPR Art. 21(3)): the ledger row outlives them, naming nobody
    consent_services.objection_record(customer=customer, scope="direct_marketing", source="admin")
    # a hold, since released, whose free-text note names the person (the form asks not to; people do)
    hold = retention.legal_hold_place(
        customer_ids=[customer.pk], reason="litigation", placed_by=officer, note=HOLD_NOTE
    )
    retention.legal_hold_release(holds=hold, released_by=officer)
    customer.refresh_from_db()
    theirs = {str(v) for k, v in THEIRS.items() if k != "preferences"}
    theirs |= {
        THEIRS["preferences"]["memo"],
        VISITOR,
        SOURCE_IP,
        USER_AGENT,
        EVENT_MARK,
        ORDER_NO,
        HEALTH,
        HOLD_NOTE,
    }
    # the values as stored after normalisation (case-folded e-mail, E.164 phone) and the person's keyed hashes
    theirs |= {customer.email, customer.phone, str(customer.birth_date)}
    theirs |= {
        h for h in (customer.email_bidx, customer.phone_bidx, customer.name_bidx, customer.kana_bidx) if h
    }
    return customer, theirs


def _models_pointing_at_customers() -> list[tuple[type[Any], str]]:
    """(model, field) of every model with a link to a customer and personal fields in the registry."""
    out = []
    for model in apps.get_models():
        label = model._meta.label
        if not REGISTRY.personal_fields(label):
            continue
        for field in model._meta.concrete_fields:
            if field.is_relation and field.related_model is Customer:
                out.append((model, field.name))
    return out


def _readable(field: Any, raw: Any) -> str | None:
    """What a stored value gives to someone holding every key: its clear text, or None when unreadable."""
    if raw is None or raw == "":
        return None
    if isinstance(field, _EncryptedMixin):
        try:
            return decrypt_str(raw, bound_to=field.encrypted_column_label)
        except DecryptionError:
            return None
    return raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)


def _registered_values_of(theirs: set[str]) -> list[tuple[str, str, Any]]:
    """(model label, field, row id) of every registered personal or derived value that is the person's."""
    found = []
    for label, specs in REGISTRY.models.items():
        model = apps.get_model(label)
        table = connection.ops.quote_name(model._meta.db_table)
        pk = connection.ops.quote_name(model._meta.pk.column)
        for name, spec in specs.items():
            if not (spec.personal or spec.data_class == DataClass.DERIVED):
                continue
            field = model._meta.get_field(name)
            with connection.cursor() as cur:
                cur.execute(f"SELECT {pk}, {connection.ops.quote_name(field.column)} FROM {table}")
                for row_id, raw in cur.fetchall():
                    text = _readable(field, raw)
                    if text and any(mine in text for mine in theirs):
                        found.append((label, name, row_id))
    return found


@pytest.mark.parametrize("path", ["request_desk", "retention_run"])
def test_after_erasure_nothing_of_the_person_decrypts_anywhere(team, support_agent, privacy_officer, path):
    # given a person with something of theirs in every model that keeps personal data about customers
    customer, theirs = _person(team, privacy_officer)
    customer_id = customer.pk
    uncovered = [
        (m._meta.label, f)
        for m, f in _models_pointing_at_customers()
        if not m._base_manager.filter(**{f: customer})
    ]
    assert uncovered == [], "seed a row of the person in these models so the probe covers them"
    # and the probe sees them before erasure (it is able to find what it looks for)
    before = {(label, name) for label, name, _id in _registered_values_of(theirs)}
    assert ("consent.ConsentEvent", "source_ip") in before and ("crm.Customer", "email") in before

    # when the person is erased (by the request desk, or by a retention run)
    if path == "request_desk":
        out = retention.customer_erase(customer_ids=[customer_id], reason="dsar:probe", actor=support_agent)
        assert out.acted == [customer_id]
    else:
        Customer.objects.filter(pk=customer_id).update(last_activity_at=WHEN - dt.timedelta(days=4000))
        policy = RetentionPolicy.objects.create(
            name="probe", trigger="inactive", days=1095, action="erase", legal_basis="probe", batch_size=10
        )
        run = retention.retention_run_to_completion(
            run=retention.retention_run_start(policy=policy, enqueue=False)
        )
        assert run.erased == 1

    # then no registered personal field of any model, in any row, reads as anything of theirs …
    survivors = _registered_values_of(theirs)
    statutory = [
        (label, name, row_id)
        for label, name, row_id in survivors
        if REGISTRY.spec(label, name).retention in retention.STATUTORY_CATEGORIES
    ]
    assert [s for s in survivors if s not in statutory] == []
    # … except statutory records the law makes us keep (tax records), which no longer point at the person
    assert statutory == [("crm.Purchase", "order_no", Purchase.objects.get(order_no=ORDER_NO).pk)]
    assert Purchase.objects.get(order_no=ORDER_NO).customer_id is None
    # and the consent ledger still proves what they consented to, without their evidence
    proof = ConsentEvent.objects.filter(customer_id=customer_id).order_by("id")
    assert [(e.purpose.code, e.action) for e in proof] == [
        ("analytics", "grant"),
        ("special_care_health", "grant"),
        ("marketing_email", "withdraw"),
    ]
    assert all(e.erased_at and e.evidence_hash for e in proof)
    # and the audit trail names no value of theirs either
    for entry in AuditEntry.objects.all():
        text = json.dumps(
            [
                entry.object_repr,
                entry.changes,
                entry.changes_text,
                entry.serialized_data,
                entry.additional_data,
            ],
            ensure_ascii=False,
            default=str,
        )
        assert not [mine for mine in theirs if mine in text], entry.pk
