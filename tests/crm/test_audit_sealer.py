"""The audit chain is sealed by one dedicated process (`manage.py audit_sealer`), not by the web and worker
processes; each new head is anchored outside the database once its seal commits."""

from __future__ import annotations

import json
import threading
from io import StringIO

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connections, transaction

from config.launcher import process_commands
from crm import services
from crm.audit.anchor import anchor_read, anchor_write
from crm.audit.sealing import (
    ChainBusy,
    _seal_after_commit,
    anchor_catch_up,
    audit_seal_pending,
    audit_sealer_run,
)
from crm.audit.verification import audit_chain_verify
from crm.models import AUDIT_CHAIN_LOCK, AuditChainHead, AuditEntry, Customer
from tests.marks import transactional_all_apps
from tests.services import database_conninfo


def _customer(team, n: int) -> Customer:
    return services.customer_create(
        team=team, family_name="山田", given_name="太郎", member_no=f"S{n:09d}", collection_channel="web_form"
    )


def _pending() -> int:
    return AuditEntry.objects.filter(chain_seq=None).count()


def _anchored_seqs(path) -> list[int]:
    return [json.loads(line)["seq"] for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def anchor(settings, tmp_path):
    settings.AUDIT_ANCHOR_PATH = str(tmp_path / "audit-anchor.jsonl")
    return tmp_path / "audit-anchor.jsonl"


@pytest.fixture
def sealer_process_mode(settings):
    """Production's mode: writers never seal; only the sealer process (or beat) does."""
    settings.AUDIT_SEAL_ON_COMMIT = False


@pytest.mark.django_db
def test_writers_never_seal_outside_the_test_mode(sealer_process_mode, team):
    # when a service writes audited rows in a transaction
    _customer(team, 1)

    # then no seal waits for its commit: the entries stay for the sealer process
    hooks = transaction.get_connection().run_on_commit
    assert not [cb for _sids, cb, _robust in hooks if cb is _seal_after_commit]
    assert _pending() >= 1


@transactional_all_apps()
def test_the_sealer_loop_chains_committed_entries_and_anchors_each_head(team, anchor, sealer_process_mode):
    # given committed entries nobody sealed (no seal on commit in this mode)
    _customer(team, 1)
    _customer(team, 2)
    assert _pending() >= 2

    # when the sealer loop runs (as `manage.py audit_sealer` does), until it has sealed something
    stop, sealed = threading.Event(), threading.Event()

    def run() -> None:
        try:
            audit_sealer_run(stop=stop, interval=0.05, sealed=sealed)
        finally:
            connections.close_all()  # this thread's own connection

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert sealed.wait(timeout=30), "the sealer loop sealed nothing"
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()

    # then everything is chained, the head is anchored in the file, and the chain reaches it
    assert _pending() == 0
    head = AuditChainHead.objects.get()
    assert max(_anchored_seqs(anchor)) == head.seq
    report = audit_chain_verify()
    assert report.ok and report.anchored_seq == head.seq


@pytest.mark.django_db
def test_a_sealer_finding_the_lock_taken_leaves_the_work_to_the_process_that_got_there_first(team):
    # given pending entries and another process holding the chain lock
    _customer(team, 1)
    other = psycopg.connect(database_conninfo(), autocommit=True)
    other.execute("SELECT pg_advisory_lock(%s)", [AUDIT_CHAIN_LOCK])
    try:
        # when a sealer that must not wait looks, then it does nothing
        with pytest.raises(ChainBusy):
            audit_seal_pending(wait=False)
        assert _pending() >= 1
    finally:
        other.execute("SELECT pg_advisory_unlock(%s)", [AUDIT_CHAIN_LOCK])
        other.close()
    # and once the lock is free it seals them
    assert audit_seal_pending(wait=False) >= 1
    assert _pending() == 0


@pytest.mark.django_db
def test_a_head_is_anchored_only_when_its_seal_commits(team, anchor, django_capture_on_commit_callbacks):
    # given pending entries
    _customer(team, 1)

    # when a seal is rolled back, then nothing is anchored
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        audit_seal_pending()
        transaction.set_rollback(True)
    assert _anchored_seqs(anchor) == []

    # when a seal commits, then its head is anchored, after the commit
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        audit_seal_pending()
    assert _anchored_seqs(anchor) == []
    for callback in callbacks:
        callback()
    assert _anchored_seqs(anchor) == [AuditChainHead.objects.get().seq]


def test_the_highest_signed_head_of_this_database_is_the_anchor(tmp_path, settings, monkeypatch):
    # given heads appended out of order by two sealers, a line forged without the key, a torn line, and a
    # higher head of another database anchored in the same file
    path = tmp_path / "anchor.jsonl"
    anchor_write(5, "a" * 64, path)
    anchor_write(3, "b" * 64, path)
    database = settings.DATABASES["default"]
    forged = {"seq": 99, "hash": "c" * 64, "time": "", "db": database["NAME"], "mac": "0" * 64}
    with path.open("a") as f:
        f.write(json.dumps(forged) + '\n{"seq": 7')
    with monkeypatch.context() as m:
        m.setitem(database, "NAME", database["NAME"] + "_scratch")
        anchor_write(50, "e" * 64, path)

    # when the anchor is read, then it is the highest correctly signed head of this database
    anchored = anchor_read(path)
    assert (anchored.seq, anchored.hash) == (5, "a" * 64)


@pytest.mark.django_db
def test_a_replayed_head_is_caught_by_the_anchor_without_any_option(team, owner, anchor):
    # given a sealed, anchored trail
    _customer(team, 1)
    audit_seal_pending()
    anchor_catch_up()
    old_head = AuditChainHead.objects.values("seq", "hash", "mac").get()

    # when someone writes an entry, anchors it, then deletes it and restores the old head row
    _customer(team, 2)
    audit_seal_pending()
    anchor_catch_up()
    newest = AuditEntry.objects.order_by("-chain_seq").first()
    with transaction.atomic(), connections["default"].cursor() as cur:
        cur.execute("SELECT set_config('crm.audit_maintenance', 'on', true)")
        cur.execute("DELETE FROM crm_auditentry WHERE id = %s", [newest.pk])
        cur.execute("UPDATE crm_auditchainhead SET seq = %(seq)s, hash = %(hash)s, mac = %(mac)s", old_head)

    # then the verification fails on the anchored head
    report = audit_chain_verify()
    assert (report.problem.kind, report.problem.seq) == ("anchor", newest.chain_seq)


@pytest.mark.django_db
def test_a_removed_anchor_file_fails_a_non_empty_chain(team, anchor):
    # given a sealed trail and anchoring configured, but no head in the anchor file
    _customer(team, 1)
    audit_seal_pending()
    assert not anchor.exists()

    # when verified, then it fails: the file was removed or replaced
    assert audit_chain_verify().problem.kind == "anchor"
    # and once the sealer starts, it anchors the current head and the chain verifies
    anchor_catch_up()
    assert audit_chain_verify().ok


@pytest.mark.django_db
def test_the_sealer_never_anchors_a_head_behind_the_anchor(team, anchor):
    # given an anchor ahead of the database's head (a restored or wiped database)
    _customer(team, 1)
    audit_seal_pending()
    head = AuditChainHead.objects.get()
    anchor_write(head.seq + 10, "d" * 64)

    # when the sealer starts, then it leaves the anchor alone, and the verification reports the gap
    anchor_catch_up()
    assert _anchored_seqs(anchor) == [head.seq + 10]
    assert audit_chain_verify().problem.kind == "anchor"


@pytest.mark.django_db
def test_audit_sealer_once_seals_what_is_pending(team, anchor, sealer_process_mode):
    # given pending entries
    _customer(team, 1)
    pending = _pending()

    # when the command runs once, then it seals them and says how many
    out = StringIO()
    call_command("audit_sealer", "--once", stdout=out)
    assert out.getvalue().strip() == f"sealed {pending} entries"
    assert _pending() == 0
    # and a nonsensical interval is refused in Japanese
    with pytest.raises(CommandError, match="--interval"):
        call_command("audit_sealer", "--interval", "0")


def test_dev_up_runs_the_audit_sealer_beside_web_worker_and_beat():
    # when ./dev up lists its processes, then the sealer is one of them, as a management command
    commands = process_commands(8000)
    assert set(commands) == {"web", "worker", "beat", "sealer"}
    assert commands["sealer"][1].endswith("manage.py") and commands["sealer"][2:] == ["audit_sealer"]
