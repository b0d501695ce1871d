"""Erasure reaches the consent ledger: the proof stays (purpose, version, time, action, a keyed hash of the
evidence), the personal parts of the evidence (source address, user agent, cookie id) are gone, and the
database allows that one change only on the erasure path."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from consent import rules, services
from consent.models import ConsentEvent
from crm.retention import services as retention
from tests.consent.conftest import at

pytestmark = pytest.mark.django_db

IP, UA, VISITOR = "203.0.113.77", "Mozilla/5.0 (Erasure-Probe)", "v-evidence-1"
SET, WHERE = "UPDATE consent_consentevent SET ", " WHERE id = %s"


def _raw_evidence(event_id: int) -> tuple[str, str, str]:
    """The stored columns as the database holds them (ciphertext for the encrypted two)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT source_ip, user_agent, visitor_id FROM consent_consentevent WHERE id = %s", [event_id]
        )
        return cur.fetchone()


def _consents_with_evidence(customer, grant, withdraw) -> list[ConsentEvent]:
    """A consent given as an anonymous visitor (cookie banner), the visitor identified as the customer (the
    row is copied for them), then a withdrawal on a web form: three ledger rows with evidence."""
    evidence = {"source_ip": IP, "user_agent": UA, "form_id": "F-7"}
    as_visitor = grant(visitor_id=VISITOR, code="analytics", when=at("2026-04-01 10:00"), evidence=evidence)
    services.visitor_link(visitor_id=VISITOR, customer=customer)
    copied = ConsentEvent.objects.get(source_event=as_visitor)
    withdrawn = withdraw(customer, code="analytics", when=at("2026-05-01 10:00"), evidence=evidence)
    return [as_visitor, copied, withdrawn]


def test_erasure_keeps_the_proof_and_leaves_no_readable_evidence(customer, grant, withdraw, support_agent):
    # given a customer whose consents carry their source address, user agent and cookie id
    rows = _consents_with_evidence(customer, grant, withdraw)
    proof_before = {
        r.pk: (r.customer_id, r.purpose_id, r.purpose_version_id, r.action, r.occurred_at, r.form_id)
        for r in ConsentEvent.objects.filter(pk__in=[r.pk for r in rows])
    }
    expected_hashes = {
        r.pk: rules.evidence_hash(
            services.evidence_key(), source_ip=r.source_ip, user_agent=r.user_agent, visitor_id=r.visitor_id
        )
        for r in ConsentEvent.objects.filter(pk__in=[r.pk for r in rows])
    }

    # when the request desk erases the customer
    out = retention.customer_erase(customer_ids=[customer.pk], reason="dsar:erase", actor=support_agent)

    # then every ledger row of the person is still there with its proof …
    assert out.acted == [customer.pk]
    kept = {r.pk: r for r in ConsentEvent.objects.filter(pk__in=[r.pk for r in rows])}
    assert {
        pk: (r.customer_id, r.purpose_id, r.purpose_version_id, r.action, r.occurred_at, r.form_id)
        for pk, r in kept.items()
    } == proof_before
    # … and a keyed hash of its evidence, which the original evidence still matches
    assert {pk: r.evidence_hash for pk, r in kept.items()} == expected_hashes
    assert all(r.erased_at is not None for r in kept.values())
    # but nothing of the evidence is left to decrypt, the anonymous visitor's row included
    for pk in kept:
        assert _raw_evidence(pk) == ("", "", "")


def test_anonymisation_clears_the_evidence_too(customer, grant, withdraw):
    # given a customer with consents carrying evidence
    rows = _consents_with_evidence(customer, grant, withdraw)
    # when the customer is anonymised (the row stays, no longer identifiable)
    retention.customer_anonymise(customer_ids=[customer.pk], reason="dsar:anon", actor=None)
    # then the ledger keeps the rows but not the address, user agent or cookie id
    for r in rows:
        assert _raw_evidence(r.pk) == ("", "", "")


def test_a_held_customer_keeps_the_evidence(customer, grant, withdraw, privacy_officer):
    # given a customer under a legal hold (litigation: the evidence may be needed)
    rows = _consents_with_evidence(customer, grant, withdraw)
    retention.legal_hold_place(customer_ids=[customer.pk], reason="litigation", placed_by=privacy_officer)
    # when erasure is requested
    out = retention.customer_erase(customer_ids=[customer.pk], reason="dsar:erase", actor=None)
    # then nobody is erased and the evidence is untouched
    assert out.held == [customer.pk] and out.acted == []
    assert ConsentEvent.objects.get(pk=rows[2].pk).source_ip == IP


def test_another_persons_evidence_is_untouched(customer, foreign_customer, grant):
    # given two customers with evidence
    mine = grant(customer, evidence={"source_ip": IP})
    theirs = grant(foreign_customer, evidence={"source_ip": "198.51.100.9"})
    # when one is erased
    retention.customer_erase(customer_ids=[customer.pk], reason="dsar:erase", actor=None)
    # then only that one's evidence is cleared
    assert _raw_evidence(mine.pk)[0] == ""
    kept = ConsentEvent.objects.get(pk=theirs.pk)
    assert (kept.source_ip, kept.erased_at, kept.evidence_hash) == ("198.51.100.9", None, "")


@pytest.mark.parametrize(
    ("setting", "sql"),
    [
        # the erasure path's own shape, but without the erasure session setting
        (
            None,
            SET + "source_ip = '', user_agent = '', erased_at = now()" + WHERE,
        ),
        # the setting on, but the proof itself changed
        ("on", SET + "action = 'withdraw', erased_at = now()" + WHERE),
        (
            "on",
            SET + "source_ip = '', occurred_at = now(), erased_at = now()" + WHERE,
        ),
        # the setting on, evidence replaced rather than cleared
        ("on", SET + "source_ip = 'x', erased_at = now()" + WHERE),
        # the setting on, evidence cleared without saying so (no erased_at)
        ("on", SET + "source_ip = '', user_agent = ''" + WHERE),
        ("on", "DELETE FROM consent_consentevent" + WHERE),
    ],
)
def test_the_database_allows_only_the_erasure_shaped_update(customer, grant, setting, sql):
    # given a recorded consent with evidence
    event = grant(customer, evidence={"source_ip": IP, "user_agent": UA})
    # when raw SQL tries anything but "clear the evidence, set erased_at" under the erasure setting
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        if setting:
            cur.execute("SELECT set_config('consent.evidence_erasure', %s, true)", [setting])
        cur.execute(sql, [event.pk])
    # then the row is unchanged
    kept = ConsentEvent.objects.get(pk=event.pk)
    assert (kept.action, kept.source_ip, kept.user_agent, kept.erased_at) == ("grant", IP, UA, None)


def test_an_erased_row_cannot_be_erased_again_with_other_values(customer, grant, support_agent):
    # given a consent whose evidence was erased
    event = grant(customer, evidence={"source_ip": IP, "user_agent": UA})
    retention.customer_erase(customer_ids=[customer.pk], reason="dsar:erase", actor=support_agent)
    erased = ConsentEvent.objects.get(pk=event.pk)
    # when the erasure setting is used to rewrite its evidence hash
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT set_config('consent.evidence_erasure', 'on', true)")
        cur.execute(
            SET + "evidence_hash = repeat('0', 64), erased_at = now()" + WHERE,
            [event.pk],
        )
    # then the proof written at erasure stands
    assert ConsentEvent.objects.get(pk=event.pk).evidence_hash == erased.evidence_hash


def test_the_state_table_can_be_rebuilt_after_an_erasure(customer, teammate_customer, grant, withdraw):
    # given two customers with consents, one of them erased (their ledger rows stay, naming nobody)
    grant(customer)
    withdraw(teammate_customer)
    retention.customer_erase(customer_ids=[customer.pk], reason="dsar:erase", actor=None)
    # when the current states are rebuilt from the whole ledger (after a bulk load, or to repair)
    with transaction.atomic():
        services.consent_state_rebuild()
    # then the remaining customer's state is there, and no state is made up for the erased one
    from consent.models import ConsentState

    assert list(ConsentState.objects.values_list("customer_id", "granted")) == [(teammate_customer.pk, False)]


@pytest.mark.parametrize(("path", "left"), [("erase", []), ("anonymise", [""])])
def test_events_of_the_cookie_id_before_identification_go_with_the_person(customer, grant, path, left):
    # given an event recorded for a cookie id before its visitor was identified as the customer
    from crm.models import CustomerEvent

    CustomerEvent.objects.create(visitor_id=VISITOR, kind="page_view", occurred_at=at("2026-04-01 09:00"))
    grant(visitor_id=VISITOR, code="analytics", when=at("2026-04-01 10:00"))
    services.visitor_link(visitor_id=VISITOR, customer=customer)
    # when the customer is erased (or anonymised)
    fn = retention.customer_erase if path == "erase" else retention.customer_anonymise
    fn(customer_ids=[customer.pk], reason=f"dsar:{path}", actor=None)
    # then the event is gone (erasure) or kept without the cookie id (anonymisation)
    assert (
        list(CustomerEvent.objects.filter(customer__isnull=True).values_list("visitor_id", flat=True)) == left
    )
