"""Sealing after commit, coalesced per process (crm.audit._CoalescingSealer): under a stream of writes the
chain is extended once per interval, and every committed entry is still chained within about an interval."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from crm import audit, services
from crm.audit import _CoalescingSealer, audit_chain_verify
from crm.models import AuditEntry, Customer
from tests.marks import transactional_all_apps
from tests.services import database_conninfo

pytestmark = transactional_all_apps()

INTERVAL = 1.0  # long beside a customer write (tens of ms), so the writes below fall within one interval


def _pending() -> int:
    return AuditEntry.objects.filter(chain_seq=None).count()


def _customer(team, n: int) -> Customer:
    return services.customer_create(
        team=team, family_name="山田", given_name="太郎", member_no=f"S{n:09d}", collection_channel="web_form"
    )


@pytest.fixture
def sealer(settings, monkeypatch) -> Iterator[_CoalescingSealer]:
    settings.AUDIT_SEAL_COALESCE_SECONDS = INTERVAL
    fresh = _CoalescingSealer()
    monkeypatch.setattr(audit, "_sealer", fresh)
    yield fresh
    fresh.close()  # its thread's connection must not outlive the test database


def _wait_until_sealed(limit: float) -> float:
    started = time.monotonic()
    while _pending() and time.monotonic() - started < limit:
        time.sleep(0.05)
    return time.monotonic() - started


def test_first_commit_seals_at_once_and_the_next_ones_within_the_interval(team, sealer):
    # given a quiet process (the fixtures' own writes sealed, and an interval without any commit)
    _wait_until_sealed(10 * INTERVAL)
    time.sleep(INTERVAL)

    # when a write commits, then it is chained as soon as it commits
    _customer(team, 1)
    assert _pending() == 0

    # when more writes commit right after it (autocommit: each is its own transaction)
    _customer(team, 2)
    _customer(team, 3)

    # then they wait for one seal at the end of the interval instead of one seal each
    assert _pending() >= 1
    _wait_until_sealed(10 * INTERVAL)
    assert _pending() == 0
    # and the chain they form verifies
    assert audit_chain_verify().ok


def test_interval_zero_seals_after_every_commit(settings, monkeypatch, team):
    # given the tests' and operators' "no coalescing" setting
    settings.AUDIT_SEAL_COALESCE_SECONDS = 0
    monkeypatch.setattr(audit, "_sealer", _CoalescingSealer())

    # when writes commit one after another, then none is ever left pending
    for n in range(3):
        _customer(team, 10 + n)
        assert _pending() == 0


def test_a_process_ending_within_the_interval_seals_on_its_way_out(settings, monkeypatch, team):
    # given a long interval: the second commit only schedules a seal
    settings.AUDIT_SEAL_COALESCE_SECONDS = 60
    sealer = _CoalescingSealer()
    monkeypatch.setattr(audit, "_sealer", sealer)
    _wait_until_sealed(10 * INTERVAL)
    _customer(team, 20)
    _customer(team, 21)
    assert _pending() >= 1

    # when the process exits (the at-exit hook the sealer registered runs flush)
    sealer.flush()
    sealer.close()

    # then nothing is left for beat, and the chain verifies
    assert _pending() == 0
    assert audit_chain_verify().ok


def _write_and_close(team, n: int) -> None:
    from django.db import connection

    try:
        _customer(team, n)
    finally:
        connection.close()


def test_a_request_never_waits_for_the_chain_lock(sealer, team):
    # given another process holding the chain lock (a long seal, or a stalled one)
    import psycopg

    from crm.models import AUDIT_CHAIN_LOCK

    other = psycopg.connect(database_conninfo(), autocommit=True)
    _wait_until_sealed(10 * INTERVAL)
    time.sleep(INTERVAL)
    other.execute("SELECT pg_advisory_lock(%s)", [AUDIT_CHAIN_LOCK])
    try:
        # when a write commits (in a thread, so that a write that did wait fails this test, not hangs it)
        writer = threading.Thread(target=_write_and_close, args=(team, 30))
        writer.start()
        writer.join(timeout=5)

        # then it has returned while the lock is still held, and its entry waits, pending
        assert not writer.is_alive()
        assert _pending() >= 1
    finally:
        other.execute("SELECT pg_advisory_unlock(%s)", [AUDIT_CHAIN_LOCK])
        other.close()

    # and once the lock is free, the timer chains it
    _wait_until_sealed(20 * INTERVAL)
    assert _pending() == 0
    assert audit_chain_verify().ok


def _backend_alive(pid: int) -> bool:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cur.fetchone()[0] == 1


def test_the_sealer_thread_keeps_one_connection_and_gives_it_back_when_idle(team, sealer, monkeypatch):
    # given a sealer whose thread notes the database backend each of its seals ran on
    from django.db import connection

    backends = []
    seal = audit._seal_quietly

    def noting_seal(**kwargs):
        done = seal(**kwargs)
        if threading.current_thread().name == "audit-sealer":
            backends.append(connection.connection.info.backend_pid)
        return done

    monkeypatch.setattr(audit, "_seal_quietly", noting_seal)
    _wait_until_sealed(10 * INTERVAL)
    time.sleep(INTERVAL)
    # when writes keep coming, interval after interval
    for n in range(3):
        _customer(team, 40 + 2 * n)
        _customer(team, 41 + 2 * n)
        assert _wait_until_sealed(10 * INTERVAL) < 10 * INTERVAL
    # then the thread sealed them on one connection, not a new one per seal
    assert len(backends) >= 2
    assert len(set(backends)) == 1 and _backend_alive(backends[0])

    # when no seal is asked for longer than the idle time
    sealer.idle_close = 0.2
    with sealer._lock:
        sealer._wake.notify_all()  # the waiting thread re-reads the idle time
    deadline = time.monotonic() + 10
    while sealer._thread is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    # then the thread has ended and its connection is closed
    assert sealer._thread is None
    while _backend_alive(backends[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _backend_alive(backends[0])
    assert audit_chain_verify().ok
