"""Sealing after commit, coalesced per process (crm.audit._CoalescingSealer): under a stream of writes the
chain is extended once per interval, and every committed entry is still chained within about an interval."""

from __future__ import annotations

import threading
import time

import pytest

from crm import audit, services
from crm.audit import _CoalescingSealer, audit_chain_verify
from crm.models import AuditEntry, Customer
from tests.marks import transactional_all_apps

pytestmark = transactional_all_apps()

INTERVAL = 1.0  # long beside a customer write (tens of ms), so the writes below fall within one interval


def _pending() -> int:
    return AuditEntry.objects.filter(chain_seq=None).count()


def _customer(team, n: int) -> Customer:
    return services.customer_create(
        team=team, family_name="山田", given_name="太郎", member_no=f"S{n:09d}", collection_channel="web_form"
    )


@pytest.fixture
def sealer(settings, monkeypatch) -> _CoalescingSealer:
    settings.AUDIT_SEAL_COALESCE_SECONDS = INTERVAL
    fresh = _CoalescingSealer()
    monkeypatch.setattr(audit, "_sealer", fresh)
    return fresh


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
    from django.db import connection

    from crm.models import AUDIT_CHAIN_LOCK

    params = connection.get_connection_params()
    other = psycopg.connect(
        dbname=params["dbname"],
        user=params.get("user"),
        host=params.get("host"),
        port=params.get("port"),
        autocommit=True,
    )
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
