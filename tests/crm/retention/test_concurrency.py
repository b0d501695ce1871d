"""Concurrency: two runs of one policy never overlap; a batch delivered twice at the same moment is done
once; parallel slices of one run add up. Real threads, real PostgreSQL connections."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection

from crm.models import Customer
from crm.retention import services
from crm.retention.models import RetentionPolicy, RetentionRun, RetentionRunSlice
from tests.crm.retention.conftest import NOW, jst, set_activity, transactional_db_mark
from tests.factories import CustomerFactory, TeamFactory
from tests.services import database_conninfo

pytestmark = transactional_db_mark()


def in_threads(*fns: Callable[[], Any]) -> list[Any]:
    """Run the callables at the same moment, each on its own connection; results or exceptions in order."""
    barrier = threading.Barrier(len(fns))
    results: list[Any] = [None] * len(fns)

    def target(i: int, fn: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[i] = fn()
        except Exception as exc:  # returned for the assertions
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def _customers(n: int) -> None:
    team = TeamFactory(code="conc")
    for _ in range(n):
        set_activity(CustomerFactory(team=team), jst(2020, 1, 1))


def test_two_concurrent_starts_of_one_policy_make_one_run(make_policy):
    # given a policy and two starters (a beat and an admin) at the same moment
    _customers(2)
    policy = make_policy(action=RetentionPolicy.Action.ERASE)

    def start() -> RetentionRun:
        return services.retention_run_start(policy=policy, as_of=NOW, enqueue=False)

    # when
    results = in_threads(start, start)
    # then exactly one run exists and the other start was refused with a clear message
    runs = [r for r in results if isinstance(r, RetentionRun)]
    refused = [r for r in results if isinstance(r, services.RetentionRunActive)]
    assert len(runs) == 1 and len(refused) == 1, results
    assert "実行中" in str(refused[0])
    assert RetentionRun.objects.filter(policy=policy).count() == 1
    # and once the run is over, a new one may start
    services.retention_run_to_completion(run=runs[0])
    assert services.retention_run_start(policy=policy, as_of=NOW, enqueue=False).pk != runs[0].pk


def test_the_same_batch_delivered_twice_at_once_is_done_once(make_policy, settings):
    # given a one-slice run over 6 due customers in batches of 3
    settings.RETENTION_RUN_SLICES = 1
    _customers(6)
    policy = make_policy(action=RetentionPolicy.Action.ANONYMISE, batch_size=3)
    run = services.retention_run_start(policy=policy, as_of=NOW, enqueue=False)
    sl = RetentionRunSlice.objects.get(run=run)

    def deliver() -> int | None:
        return services.retention_slice_advance(slice_id=sl.pk, expected_cursor=sl.cursor, enqueue=False)

    # when two workers receive the same message at the same moment
    results = in_threads(deliver, deliver)
    # then one of them did the batch and the other found the cursor moved on
    assert results.count(None) == 1 and any(isinstance(r, int) for r in results), results
    sl.refresh_from_db()
    assert (sl.batches, sl.anonymised) == (1, 3)
    assert Customer.objects.filter(status="anonymised").count() == 3


def test_parallel_slices_of_one_run_add_up(make_policy, settings):
    # given a run split into two slices
    settings.RETENTION_RUN_SLICES = 2
    _customers(8)
    policy = make_policy(action=RetentionPolicy.Action.ERASE, batch_size=2)
    run = services.retention_run_start(policy=policy, as_of=NOW, enqueue=False)
    slices = list(RetentionRunSlice.objects.filter(run=run))
    assert len(slices) == 2

    def walk(sl: RetentionRunSlice) -> Callable[[], None]:
        def go() -> None:
            cursor: int | None = sl.cursor
            while cursor is not None:
                cursor = services.retention_slice_advance(
                    slice_id=sl.pk, expected_cursor=cursor, enqueue=False
                )

        return go

    # when two workers walk the two slices at once
    errors = in_threads(*(walk(s) for s in slices))
    # then every customer is erased once and the run completed with the right totals
    assert errors == [None, None]
    run.refresh_from_db()
    assert (run.status, run.erased, run.examined) == ("completed", 8, 8)
    assert not Customer.objects.exists()


def test_a_row_locked_elsewhere_is_skipped_not_waited_for(make_policy, settings):
    # given two due customers, one of them locked by another transaction (a hold being placed, a request
    # desk erasure in progress)
    import psycopg

    settings.RETENTION_RUN_SLICES = 1
    _customers(2)
    locked_id, free_id = Customer.objects.order_by("pk").values_list("pk", flat=True)
    other = psycopg.connect(database_conninfo())
    try:
        other.execute("SELECT id FROM crm_customer WHERE id = %s FOR UPDATE", [locked_id])
        policy = make_policy(action=RetentionPolicy.Action.ERASE, batch_size=10)
        # when the run walks past it
        run = services.retention_run_to_completion(
            run=services.retention_run_start(policy=policy, as_of=NOW, enqueue=False)
        )
    finally:
        other.rollback()
        other.close()
    # then the locked customer is left alone and reported; the other is erased
    assert list(Customer.objects.values_list("pk", flat=True)) == [locked_id]
    assert run.erased == 1 and run.failures == {"skipped_locked": 1}
    assert not Customer.objects.filter(pk=free_id).exists()
