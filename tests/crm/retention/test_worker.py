"""Fault test through a real Celery worker on the real Redis: the worker is SIGKILLed in the middle of a
batch; after a restart the run completes, nobody is half-erased, and the final state equals that of an
uninterrupted run over the same data."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis
from django.db import connection

from config.redis_url import redis_py_url
from crm.models import Customer, CustomerEvent, Purchase
from crm.retention import rules, services
from crm.retention.models import LegalHold, RetentionPolicy, RetentionRun, Tombstone
from tests.crm.retention.conftest import NOW, add_history, jst, set_activity, transactional_db_mark
from tests.factories import CustomerFactory, TeamFactory, UserFactory
from tests.services import (
    celery_worker_start,
    database_conninfo,
    service_env,
    wait_until,
    waiting_sessions_end,
    worker_stop,
)

pytestmark = [transactional_db_mark(), pytest.mark.worker]

N = 48
HELD = {5, 17, 33}
ROOT = Path(__file__).resolve().parents[3]


def _start_worker() -> subprocess.Popen[bytes]:
    return _start_worker_with({})


def _start_worker_with(extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    # pytest-django's test database and the run's broker, embedded or not
    return celery_worker_start("retention-test", **extra_env)


def _build_dataset(officer) -> RetentionPolicy:
    """48 customers: every fourth recently active, the rest inactive for years; three of those held."""
    team = TeamFactory(code="worker-test")
    for i in range(N):
        c = CustomerFactory(team=team, member_no=f"W{i:05d}", email=f"w{i}@example.com")
        set_activity(c, jst(2026, 6, 1) if i % 4 == 0 else jst(2020, 1, 1))
        add_history(c, purchases=1, events=2)
        Purchase.objects.filter(customer=c).update(order_no=f"ORD-{c.member_no}")
        if i in HELD:
            services.legal_hold_place(customer_ids=[c.pk], reason="litigation", placed_by=officer)
    return RetentionPolicy.objects.create(
        name="worker-erase", trigger="inactive", days=1095, action="erase", legal_basis="test", batch_size=3
    )


def _digest() -> tuple:
    """The data a run leaves behind, keyed by business values (ids differ between the two datasets)."""
    customers = tuple(
        sorted(
            (c.member_no, c.status, CustomerEvent.objects.filter(customer=c).count())
            for c in Customer.objects.all()
        )
    )
    purchases = tuple(sorted(Purchase.objects.values_list("order_no", "customer__member_no")))
    run = RetentionRun.objects.get()
    return (
        customers,
        purchases,
        Tombstone.objects.count(),
        (run.status, run.erased, run.skipped_hold, run.examined),
    )


def _assert_nobody_half_erased() -> None:
    present = set(Customer.objects.values_list("member_no", flat=True))
    tombstones = Tombstone.objects.count()
    for i in range(N):
        member = f"W{i:05d}"
        order = Purchase.objects.get(order_no=f"ORD-{member}")
        if member in present:
            c = Customer.objects.get(member_no=member)
            assert order.customer_id == c.pk and CustomerEvent.objects.filter(customer=c).count() == 2, member
            assert c.email == f"w{i}@example.com", member
        else:
            assert order.customer_id is None, member
    assert not CustomerEvent.objects.filter(customer__isnull=True).exists()
    assert tombstones == N - len(present)


def _reset_data() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE crm_tombstone, crm_retentionrunslice, crm_retentionrun, crm_retentionpolicy, "
            "crm_legalhold, "
            "crm_customerevent, crm_purchase, crm_customer RESTART IDENTITY CASCADE"
        )


def test_worker_killed_mid_batch_then_restarted_completes_like_an_uninterrupted_run(settings):
    # given the real Redis (the test fails, not skips, when it is unreachable) with an empty queue
    broker = redis.Redis.from_url(redis_py_url(settings.CELERY_BROKER_URL), socket_connect_timeout=3)
    broker.ping()
    broker.flushdb()
    settings.RETENTION_RUN_SLICES = 2
    officer = UserFactory(username="worker-officer")

    # and the state an uninterrupted run leaves (in-process, same data)
    policy = _build_dataset(officer)
    services.retention_run_to_completion(
        run=services.retention_run_start(policy=policy, as_of=NOW, enqueue=False)
    )
    expected = _digest()
    assert expected[3] == ("completed", N - N // 4 - len(HELD), len(HELD), N)

    # when the same data is processed by a real worker …
    _reset_data()
    policy = _build_dataset(officer)
    # … and is killed inside a batch: an uncommitted tombstone for the last customer due makes the batch that
    # reaches it wait on the unique index, after its deletes and before its commit
    target = (
        Customer.objects.filter(last_activity_at__lt=jst(2021, 1, 1))
        .exclude(member_no__in=[f"W{i:05d}" for i in HELD])
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )
    blocker = psycopg.connect(database_conninfo())
    blocker.execute(
        "INSERT INTO crm_tombstone (subject_hash, scope, action, reason, performed_at) "
        "VALUES (%s, 'customers', 'erase', 'test-blocker', now())",
        [rules.subject_hash(services.tombstone_key(), target)],
    )
    worker = _start_worker()
    try:
        run = services.retention_run_start(policy=policy, as_of=NOW)
        with psycopg.connect(database_conninfo(), autocommit=True) as watch:
            wait_until(
                "a batch waiting inside its transaction",
                lambda: (
                    watch.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND wait_event = 'transactionid'"
                    ).fetchone()[0]
                    > 0
                ),
            )
        assert sum(run.slices.values_list("batches", flat=True)) >= 2  # mid-run: earlier batches are done
        worker_stop(worker)
        # the dead worker's sessions end (PostgreSQL would notice on its next write to the socket)
        waiting_sessions_end(wait_event_type="Lock")
        blocker.rollback()
        run.refresh_from_db()
        assert run.status == RetentionRun.Status.RUNNING
        # then right after the kill nobody is half-erased (the interrupted batch rolled back whole)
        _assert_nobody_half_erased()
        assert Customer.objects.filter(pk=target).exists()

        # when the worker is restarted, it resumes the run by itself
        worker = _start_worker()
        wait_until(
            "the run to complete",
            lambda: RetentionRun.objects.get(pk=run.pk).status != RetentionRun.Status.RUNNING,
        )
    finally:
        blocker.close()
        worker_stop(worker, signal.SIGTERM)

    # then the final state equals the uninterrupted run's, and held customers are untouched
    _assert_nobody_half_erased()
    assert _digest() == expected
    assert set(LegalHold.objects.values_list("customer__member_no", flat=True)) == {f"W{i:05d}" for i in HELD}


def _start_beat(tmp_path: Path, **env: str) -> subprocess.Popen[bytes]:
    """The one beat (DatabaseScheduler: the schedule rows of the test database)."""
    celery = str(Path(sys.executable).with_name("celery"))
    return subprocess.Popen(
        [celery, "-A", "config", "beat", "-l", "WARNING", "--max-interval", "1", "-s", str(tmp_path / "s")],
        cwd=ROOT,
        env=service_env(DJANGO_ENV="test", CONN_MAX_AGE="0", **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_a_slice_stalled_after_its_commit_is_resumed_by_beat_without_a_restart(settings, tmp_path):
    # given the real Redis with an empty queue, a running worker, and a short heartbeat for the test
    from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

    from config.celery import app

    broker = redis.Redis.from_url(redis_py_url(settings.CELERY_BROKER_URL), socket_connect_timeout=3)
    broker.ping()
    broker.flushdb()
    settings.RETENTION_RUN_SLICES = 2
    officer = UserFactory(username="stall-officer")
    heartbeat = {"RETENTION_HEARTBEAT_SECONDS": "2"}
    # and the state an uninterrupted run leaves (in-process, same data), with the batches it takes
    policy = _build_dataset(officer)
    services.retention_run_to_completion(
        run=services.retention_run_start(policy=policy, as_of=NOW, enqueue=False)
    )
    expected = _digest()
    expected_batches = sum(RetentionRun.objects.get().slices.values_list("batches", flat=True))
    _reset_data()
    policy = _build_dataset(officer)
    # (the watchdog every second: the schedule follows the heartbeat, as the migration sets it to 30 s; the
    # row is written here because a flush between transactional tests empties the migrations' rows)
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(task="crm.retention.resume_stalled").delete()
    PeriodicTask.objects.create(name="watchdog", task="crm.retention.resume_stalled", interval=every_second)
    PeriodicTasks.update_changed()
    worker = _start_worker_with(heartbeat)
    beat = None
    try:
        wait_until("the worker to answer", lambda: bool(app.control.ping(timeout=0.5)))
        # (and to be done with its start-up resume, so that only beat can pick up what follows)
        inspect = app.control.inspect(timeout=0.5)
        wait_until(
            "the worker to be idle",
            lambda: (
                broker.llen("celery") == 0
                and not any((inspect.active() or {}).values())
                and not any((inspect.reserved() or {}).values())
            ),
        )
        # when each slice's worker dies right after committing its first batch: committed, never enqueued
        run = services.retention_run_start(policy=policy, as_of=NOW, enqueue=False)
        for sl in run.slices.all():
            services.retention_slice_advance(slice_id=sl.pk, expected_cursor=sl.cursor, enqueue=False)
        # and beat keeps running its schedule; no worker restarts
        beat = _start_beat(tmp_path, **heartbeat)
        # then the stalled slices are picked up and the run completes
        wait_until(
            "the run to complete",
            lambda: RetentionRun.objects.get(pk=run.pk).status != RetentionRun.Status.RUNNING,
        )
    finally:
        if beat is not None:
            worker_stop(beat, signal.SIGTERM)
        worker_stop(worker, signal.SIGTERM)
    # with the same result as an uninterrupted run, every batch done exactly once
    _assert_nobody_half_erased()
    assert _digest() == expected
    assert sum(run.slices.values_list("batches", flat=True)) == expected_batches
