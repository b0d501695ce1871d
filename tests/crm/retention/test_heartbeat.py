"""Stalled slices: a worker killed between committing a batch and queueing the next one leaves its slice
without a message. The slice's heartbeat (written by every batch) goes stale, and the watchdog (beat, every
RETENTION_HEARTBEAT_SECONDS) picks it up after one missed interval, exactly once whatever the number of
watchdogs."""

from __future__ import annotations

import datetime as dt

import time_machine
from django.db import connection

from crm.retention import services, tasks
from crm.retention.models import RetentionPolicy, RetentionRunSlice
from crm.retention.services import runs
from tests.crm.retention.conftest import NOW, jst, set_activity, transactional_db_mark
from tests.crm.retention.test_concurrency import in_threads
from tests.factories import CustomerFactory, TeamFactory


def _stalled_slice(make_policy) -> RetentionRunSlice:
    """A one-slice run whose first batch committed and whose next message was never sent (worker killed)."""
    team = TeamFactory(code="hb")
    for _ in range(4):
        set_activity(CustomerFactory(team=team), jst(2020, 1, 1))
    run = services.retention_run_start(
        policy=make_policy(action=RetentionPolicy.Action.ANONYMISE, batch_size=2), as_of=NOW, enqueue=False
    )
    sl = run.slices.get()
    # the batch commits; enqueue=False is the kill between the commit and the enqueue of the next batch
    services.retention_slice_advance(slice_id=sl.pk, expected_cursor=sl.cursor, enqueue=False)
    sl.refresh_from_db()
    assert not sl.done
    return sl


def test_a_stall_is_picked_up_after_one_missed_heartbeat(
    db, make_policy, settings, monkeypatch, django_capture_on_commit_callbacks
):
    # given the default heartbeat interval and a slice whose chain stopped after its last batch committed
    settings.RETENTION_RUN_SLICES = 1
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(runs, "_enqueue_slices", lambda items: sent.extend(items))
    sl = _stalled_slice(make_policy)
    beat_at = sl.heartbeat_at

    # when the watchdog task runs (as beat calls it: no arguments) within one interval of the heartbeat
    with time_machine.travel(beat_at + dt.timedelta(seconds=20), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            early = tasks.retention_resume_stalled()
    # then the slice is not yet considered stalled
    assert early == 0 and sent == []

    # when it runs again once a heartbeat has been missed
    with time_machine.travel(beat_at + dt.timedelta(seconds=31), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            late = tasks.retention_resume_stalled()
    # then the slice is sent again at its committed cursor
    assert late == 1 and sent == [(sl.pk, sl.cursor)]


def test_beat_runs_the_watchdog_at_least_once_per_heartbeat_interval(db, settings):
    # given the schedule the migrations create
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="crm.retention.resume_stalled")
    # then the watchdog runs at least once per heartbeat interval, so a stall waits at most two intervals
    assert task.enabled and task.interval is not None
    assert dt.timedelta(**{task.interval.period: task.interval.every}) <= dt.timedelta(
        seconds=getattr(settings, "RETENTION_HEARTBEAT_SECONDS", 30)
    )


@transactional_db_mark()
def test_two_watchdogs_at_once_resume_a_stalled_slice_exactly_once(make_policy, settings, monkeypatch):
    # given a stalled slice whose heartbeat is two intervals old
    settings.RETENTION_RUN_SLICES = 1
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(runs, "_enqueue_slices", lambda items: sent.extend(items))
    sl = _stalled_slice(make_policy)
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE crm_retentionrunslice SET heartbeat_at = now() - interval '60 seconds' WHERE id = %s",
            [sl.pk],
        )

    def watchdog() -> int:
        return tasks.retention_resume_stalled()

    # when two watchdogs (a beat tick and a restarting worker's) run at the same moment
    results = in_threads(watchdog, watchdog)
    # then exactly one of them re-sends the slice
    assert sorted(results) == [0, 1], results
    assert sent == [(sl.pk, sl.cursor)]
    # and the resumed batch itself runs once (a late duplicate finds the cursor moved on)
    for _ in range(2):
        services.retention_slice_advance(slice_id=sl.pk, expected_cursor=sl.cursor, enqueue=False)
    sl.refresh_from_db()
    assert (sl.done, sl.batches, sl.anonymised) == (True, 2, 4)
