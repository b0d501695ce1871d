"""Proof of erasure: the audit log holds no personal values and its chain still verifies; tombstones hold no
personal data and re-apply erasures after a backup is restored; batches are idempotent."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command

from crm import services as crm_services
from crm.audit.sealing import audit_seal_pending
from crm.audit.verification import audit_chain_verify
from crm.classification import REDACTED, REGISTRY
from crm.models import GENESIS_HASH, AuditEntry, Customer, CustomerEvent
from crm.retention import rules, services
from crm.retention.models import LegalHold, RetentionPolicy, RetentionRunSlice, Tombstone
from crm.retention.services import runs
from tests.crm.retention.conftest import add_history, jst, set_activity
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

CLEAR_VALUES = ("山田", "太郎", "ヤマダ", "taro.yamada@example.com", "+819012345678", "M000000001", "新宿")


def chain_snapshot() -> dict[int, tuple[int | None, str, str]]:
    audit_seal_pending()  # chain the entries still pending
    return {
        e.pk: (e.chain_seq, e.chain_hash, json.dumps(e.chain_payload(), sort_keys=True, default=str))
        for e in AuditEntry.objects.all()
    }


def assert_history_kept_and_new_entries_chained(before: dict[int, tuple[int | None, str, str]]) -> None:
    """Erasure rewrites no earlier entry (so a chain that verified still verifies) and its own entries link
    to their predecessors, and the whole chain verifies."""
    after = chain_snapshot()
    assert {pk: after[pk] for pk in before} == before
    by_seq = {seq: digest for seq, digest, _payload in after.values()}
    new = AuditEntry.objects.filter(pk__in=set(after) - set(before))
    assert new.exists()
    for entry in new:
        previous = by_seq[entry.chain_seq - 1] if entry.chain_seq > 1 else GENESIS_HASH
        assert entry.compute_chain_hash(previous) == entry.chain_hash
    assert audit_chain_verify().ok


def test_erasure_reaches_the_audit_log_without_breaking_the_chain(customer, support_agent):
    # given a customer created and changed through the services (auditlog records both)
    crm_services.customer_update(customer=customer, address="新宿区西新宿2-8-1", actor=support_agent)
    add_history(customer)
    before = chain_snapshot()
    # when the request desk erases them
    services.customer_erase(customer_ids=[customer.pk], reason="dsar:1", actor=support_agent)
    # then every entry about the customer holds personal fields only as [redacted] …
    ct = ContentType.objects.get_for_model(Customer)
    entries = list(AuditEntry.objects.filter(content_type=ct, object_pk=str(customer.pk)))
    assert {e.action for e in entries} >= {
        AuditEntry.Action.CREATE,
        AuditEntry.Action.UPDATE,
        AuditEntry.Action.DELETE,
    }
    personal = set(REGISTRY.personal_fields("crm.Customer"))
    for entry in entries:
        assert entry.object_repr == f"顧客 #{customer.pk}"
        for name, change in (entry.changes or {}).items():
            if name in personal:
                assert all(v in (REDACTED, "", None, "None") for v in change), name
    # … no clear value appears anywhere in the log …
    dump = json.dumps([e.chain_payload() for e in AuditEntry.objects.all()], ensure_ascii=False, default=str)
    for value in CLEAR_VALUES:
        assert value not in dump, value
    # … the erasure entry says what was done, by whom, and the chain still verifies
    erase = next(e for e in entries if e.action == AuditEntry.Action.DELETE)
    assert erase.actor == support_agent and erase.additional_data["retention"]["reason"] == "dsar:1"
    assert_history_kept_and_new_entries_chained(before)


def test_a_batch_writes_one_audit_entry(team, make_policy, frozen_now, settings):
    # given four due customers, one slice, and batches of two
    settings.RETENTION_RUN_SLICES = 1
    for _ in range(4):
        set_activity(CustomerFactory(team=team), jst(2020, 1, 1))
    policy = make_policy(action=RetentionPolicy.Action.ANONYMISE, batch_size=2)
    before = AuditEntry.objects.count()
    history = chain_snapshot()
    # when
    run = services.retention_run_to_completion(run=services.retention_run_start(policy=policy, enqueue=False))
    # then one summary entry per batch that acted, naming the run, with no values
    audit_seal_pending()
    entries = list(AuditEntry.objects.order_by("chain_seq")[before:])
    assert len(entries) == 2
    assert all(e.additional_data["retention"]["run"] == run.pk for e in entries)
    assert sum(e.additional_data["retention"]["count"] for e in entries) == 4
    assert all(v == [REDACTED, ""] for e in entries for v in e.changes.values())
    assert_history_kept_and_new_entries_chained(history)


def test_tombstone_holds_no_personal_data(customer):
    # when
    services.customer_anonymise(customer_ids=[customer.pk], reason="dsar:2", actor=None)
    # then the tombstone names the customer only by a keyed hash
    t = Tombstone.objects.get()
    assert t.subject_hash == rules.subject_hash(services.tombstone_key(), customer.pk)
    assert str(customer.pk) != t.subject_hash and (t.scope, t.action) == ("customers", "anonymise")
    row = json.dumps(list(Tombstone.objects.values()), default=str, ensure_ascii=False)
    for value in CLEAR_VALUES:
        assert value not in row


def _restore_from_backup(snapshot: dict, team) -> None:
    """Simulate a restore: the erased row comes back as it was (same id and values)."""
    Customer.objects.bulk_create([Customer(team=team, **snapshot)])


def test_reapply_after_restore(team, customer, other_team, tmp_path):
    # given a customer erased and another anonymised, and their tombstones exported beside the backups
    other = CustomerFactory(team=team)
    snap_erased = {
        f: getattr(customer, f) for f in ("id", "family_name", "email", "member_no", "collection_channel")
    }
    services.customer_erase(customer_ids=[customer.pk], reason="dsar:3", actor=None)
    services.customer_anonymise(customer_ids=[other.pk], reason="dsar:4", actor=None)
    export = tmp_path / "tombstones.jsonl"
    call_command("retention_export_tombstones", str(export), stdout=io.StringIO())
    assert all("subject_hash" in json.loads(line) for line in export.read_text().splitlines())
    # and a restore brings back the old rows (and an old tombstone table without those tombstones)
    _restore_from_backup(snap_erased, team)
    Customer.objects.filter(pk=other.pk).update(status="active", email="x@example.com")
    Tombstone.objects.all().delete()
    # when the command re-applies the exported tombstones
    out = io.StringIO()
    call_command("retention_reapply_tombstones", "--import", str(export), stdout=out)
    # then both erasures hold again
    assert not Customer.objects.filter(pk=customer.pk).exists()
    other.refresh_from_db()
    assert other.status == "anonymised" and other.email == ""
    assert "customers:erase: 1" in out.getvalue() and "customers:anonymise: 1" in out.getvalue()
    # and a second pass has nothing to do
    again = io.StringIO()
    call_command("retention_reapply_tombstones", stdout=again)
    assert "customers:erase" not in again.getvalue() and Tombstone.objects.count() == 2


def test_the_same_batch_twice_changes_nothing_the_second_time(team, make_policy, frozen_now):
    # given a run with one slice and a due customer with history
    c = set_activity(CustomerFactory(team=team), jst(2020, 1, 1))
    add_history(c, purchases=1, events=2)
    policy = make_policy(action=RetentionPolicy.Action.ERASE, batch_size=10)
    run = services.retention_run_start(policy=policy, enqueue=False)
    sl = RetentionRunSlice.objects.get(run=run)
    start = sl.cursor
    # when the batch message is delivered twice
    first = services.retention_slice_advance(slice_id=sl.pk, expected_cursor=start, enqueue=False)
    state = (
        Customer.objects.count(),
        CustomerEvent.objects.count(),
        Tombstone.objects.count(),
        AuditEntry.objects.count(),
    )
    second = services.retention_slice_advance(slice_id=sl.pk, expected_cursor=start, enqueue=False)
    # then the second delivery finds the cursor moved on and does nothing
    assert first is None and second is None  # one batch finished the slice
    after = (
        Customer.objects.count(),
        CustomerEvent.objects.count(),
        Tombstone.objects.count(),
        AuditEntry.objects.count(),
    )
    assert state == after
    sl.refresh_from_db()
    assert (sl.batches, sl.erased) == (1, 1)


def test_the_erasure_path_twice_on_the_same_ids_is_a_no_op(customer):
    # when the request desk's anonymisation is applied twice
    first = services.customer_anonymise(customer_ids=[customer.pk], reason="dsar:5", actor=None)
    second = services.customer_anonymise(customer_ids=[customer.pk], reason="dsar:5", actor=None)
    # then the second acts on nobody and adds no tombstone
    assert first.acted == [customer.pk] and second.acted == []
    assert Tombstone.objects.count() == 1


def test_resume_stalled_reenqueues_unfinished_slices(
    team, make_policy, frozen_now, monkeypatch, django_capture_on_commit_callbacks
):
    # given a run whose chain stopped (e.g. its worker died after committing a batch)
    for _ in range(3):
        set_activity(CustomerFactory(team=team), jst(2020, 1, 1))
    run = services.retention_run_start(policy=make_policy(batch_size=1), enqueue=False)
    sent = []
    monkeypatch.setattr(runs, "_enqueue_slices", lambda items: sent.extend(items))
    # when the watchdog runs
    with django_capture_on_commit_callbacks(execute=True):
        n = services.retention_resume_stalled(stale_after_seconds=0)
    # then each unfinished slice is sent again at its current cursor
    slices = list(run.slices.values_list("pk", "cursor"))
    assert n == len(slices) and sorted(sent) == sorted(slices)


def test_a_restore_brings_back_the_legal_holds_placed_after_the_backup(team, privacy_officer, tmp_path):
    # given a backup taken, then a hold placed on a customer (litigation) and another placed and released,
    # and the export written beside the backups after that
    held, freed = CustomerFactory(team=team), CustomerFactory(team=team)
    (hold,) = services.legal_hold_place(
        customer_ids=[held.pk], reason="litigation", placed_by=privacy_officer, reference="令和8年(ワ)第123号"
    )
    ended = services.legal_hold_place(customer_ids=[freed.pk], reason="dsar", placed_by=privacy_officer)
    services.legal_hold_release(holds=ended, released_by=privacy_officer)
    export = tmp_path / "tombstones.jsonl"
    call_command("retention_export_tombstones", str(export), stdout=io.StringIO())
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    hold_lines = [d for d in lines if d.get("kind") == "legal_hold"]
    # (the customers are named by keyed hashes only, like tombstones; no free-text note leaves the database)
    assert len(hold_lines) == 2 and all(
        set(d) >= {"subject_hash"} and "customer_id" not in d for d in hold_lines
    )
    assert all("note" not in d for d in hold_lines)
    # and the backup is restored: it predates both holds
    LegalHold.objects.all().delete()

    # when the export is re-applied
    out = io.StringIO()
    call_command("retention_reapply_tombstones", "--import", str(export), stdout=out)

    # then the hold protects the customer again, as it was placed
    restored = LegalHold.objects.get(customer=held)
    assert (restored.reason, restored.reference, restored.placed_at, restored.placed_by_id) == (
        "litigation",
        "令和8年(ワ)第123号",
        hold.placed_at,
        privacy_officer.pk,
    )
    assert restored.is_active()
    # and the released hold comes back released (it no longer protects anybody)
    assert not LegalHold.objects.get(customer=freed).is_active()
    # so an erasure request after the restore leaves the held customer alone
    outcome = services.customer_erase(customer_ids=[held.pk, freed.pk], reason="dsar:9", actor=None)
    assert outcome.held == [held.pk] and outcome.acted == [freed.pk]
    assert Customer.objects.filter(pk=held.pk).exists()
    # and re-applying the same export again adds nothing
    call_command("retention_reapply_tombstones", "--import", str(export), stdout=io.StringIO())
    assert LegalHold.objects.filter(customer=held).count() == 1
