"""How a consent is written: ledger row, audit entry and current state as one statement.

consent.services._ledger_write inserts the audit entry itself instead of letting auditlog's post_save
receiver do it; these tests hold it to the entry auditlog writes for a plain save.
"""

from __future__ import annotations

import pytest
from auditlog.context import disable_auditlog
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from consent import services
from consent.models import ConsentEvent, ConsentState, Purpose
from crm.audit.actors import audit_actor
from crm.audit.sealing import audit_seal_pending
from crm.audit.verification import audit_chain_verify
from crm.models import AuditEntry
from tests.consent.conftest import at

pytestmark = pytest.mark.django_db

EVIDENCE = {"form_id": "signup-2026-04", "source_ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (iPhone)"}
CHANGED_BY_EACH_ROW = {"id", "recorded_at"}  # the row's own id and recording time


def _entry_of(event: ConsentEvent) -> AuditEntry:
    return AuditEntry.objects.get(content_type__model="consentevent", object_pk=str(event.pk))


def test_the_audit_entry_is_the_one_auditlog_writes_for_a_save(customer, owner, grant):
    # given a consent recorded by staff through the service (one statement, entry built by us): an opt-in
    # on a web form
    fast = grant(customer, evidence=EVIDENCE, when=at("2026-04-01 10:00"), actor=owner)
    # and the same row saved through the ORM by the same actor (entry written by auditlog's receiver)
    version = Purpose.objects.get(code="marketing_email").current_version
    with audit_actor(owner):
        saved = ConsentEvent(
            customer=customer,
            purpose=version.purpose,
            purpose_version=version,
            action="grant",
            method="opt_in",
            channel="web_form",
            text_hash=version.text_hash,
            operator=owner,
            occurred_at=at("2026-04-01 10:00"),
            **EVIDENCE,
        )
        saved.save(force_insert=True)

    ours, theirs = _entry_of(fast), _entry_of(saved)
    # then both entries say the same, field by field, but for the row's own id and recording time
    assert set(ours.changes) == set(theirs.changes)
    for field in set(ours.changes) - CHANGED_BY_EACH_ROW:
        assert ours.changes[field] == theirs.changes[field], field
    assert ours.changes["id"] == [None, fast.pk]
    for name in ("content_type_id", "action", "actor_id", "actor_email", "remote_addr", "remote_port", "cid"):
        assert getattr(ours, name) == getattr(theirs, name), name
    expected = (str(fast.pk), fast.pk, f"同意台帳 #{fast.pk}")
    assert (ours.object_pk, ours.object_id, ours.object_repr) == expected
    assert (ours.serialized_data, ours.additional_data) == (theirs.serialized_data, theirs.additional_data)
    assert ours.actor_id == owner.pk
    # and personal values are as redacted as auditlog's (the address never appears in clear)
    assert "203.0.113.7" not in str(ours.changes) and "iPhone" not in str(ours.changes)
    # and ours is signed as any entry, and chains
    assert ours.entry_mac == ours.compute_entry_mac()
    audit_seal_pending()
    assert audit_chain_verify().ok


def test_row_entry_and_state_are_written_by_one_statement(customer, grant):
    # when a consent is recorded for a customer
    with CaptureQueriesContext(connection) as ctx:
        event = grant(customer)
    # then one statement wrote, into the ledger, the audit trail and the current state together
    writes = [q["sql"] for q in ctx.captured_queries if "INSERT" in q["sql"] or "UPDATE" in q["sql"]]
    assert len(writes) == 1, writes
    for table in ("consent_consentevent", "crm_auditentry", "consent_consentstate"):
        assert table in writes[0]
    # and what it wrote reads back as the ORM wrote it
    stored = ConsentEvent.objects.get(pk=event.pk)
    assert (stored.customer_id, stored.action) == (customer.pk, "grant")
    assert stored.recorded_at == event.recorded_at
    assert ConsentState.objects.get(customer=customer, purpose__code="marketing_email").event_id == event.pk


def test_a_failing_part_of_the_write_writes_nothing(customer, grant, monkeypatch):
    # given a state upsert the database refuses (a negative version breaks its check constraint)
    refused = services._state_upsert

    def broken(event, version_no):
        sql, params = refused(event, version_no)
        return sql, [*params[:4], -1, *params[5:]]

    monkeypatch.setattr(services, "_state_upsert", broken)
    events, entries = ConsentEvent.objects.count(), AuditEntry.objects.count()
    # when a consent is recorded
    with pytest.raises(IntegrityError), transaction.atomic():
        grant(customer)
    # then neither the ledger row nor its audit entry exists: the statement failed whole
    assert (ConsentEvent.objects.count(), AuditEntry.objects.count()) == (events, entries)
    assert not ConsentState.objects.filter(customer=customer).exists()


def test_a_visitor_consent_has_no_state_row_but_its_entry(grant):
    # when an anonymous visitor's cookie consent is recorded
    event = grant(visitor_id="visitor-0001", code="marketing_email")
    # then the ledger row and its entry exist, and no current state (it belongs to customers)
    assert _entry_of(event).changes["visitor_id"] == ["[redacted]", "[redacted]"]
    assert not ConsentState.objects.filter(event_id=event.pk).exists()


def test_with_auditlog_disabled_no_entry_is_written(customer, grant):
    # when a block disables auditlog (as auditlog.context.disable_auditlog does for a save)
    with disable_auditlog():
        event = grant(customer)
    # then the row is written and no entry, as auditlog's own receiver would have done
    assert ConsentEvent.objects.filter(pk=event.pk).exists()
    assert not AuditEntry.objects.filter(content_type__model="consentevent", object_pk=str(event.pk)).exists()


def test_ids_reserved_ahead_are_the_rows_ids(customer, grant):
    # given an id taken from the ledger's sequence ahead of the write (the API takes it in its lookup)
    with connection.cursor() as cur:
        cur.execute("SELECT nextval(pg_get_serial_sequence('consent_consentevent', 'id'))")
        reserved = cur.fetchone()[0]
    # when the consent is recorded with it, and another one without
    event = grant(customer, event_id=reserved)
    later = grant(customer)
    # then the row carries that id, its entry names it, and the next row gets a later one
    assert event.pk == reserved and _entry_of(event).object_id == reserved
    assert later.pk > reserved
    assert ConsentState.objects.get(customer=customer, purpose__code="marketing_email").event_id == later.pk
