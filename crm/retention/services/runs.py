"""Retention runs: a policy run split into id-range slices, each walked by a chain of short batch tasks.

A run freezes its policy's settings; each batch locks its customers (FOR UPDATE SKIP LOCKED) and hands them to
the erasure path (crm.retention.services.erasure), which re-checks the predicate in the acting statement. A
worker killed at any moment leaves its batch rolled back; the watchdog (retention_resume_stalled) resumes a
slice whose heartbeat is older than RETENTION_HEARTBEAT_SECONDS from its committed cursor, exactly once.
"""

from __future__ import annotations

import datetime
import logging
from collections import Counter
from typing import TYPE_CHECKING, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone

from crm.models import Customer
from crm.queue import task_enqueue
from crm.retention import participants, rules, selectors
from crm.retention.models import RetentionPolicy, RetentionRun, RetentionRunSlice
from crm.retention.services.clearing import column, pk, table
from crm.retention.services.erasure import act
from crm.retention.services.errors import RetentionRunActive

if TYPE_CHECKING:
    import datetime as dt

    from django.contrib.auth.models import User

log = logging.getLogger(__name__)

Action = RetentionPolicy.Action

# Advisory-lock namespace of the retention engine (first int of the two-int form); second: the policy id.
RETENTION_LOCK_NS = 0x5245_5430  # "RET0"


def _slices_wanted() -> int:
    return int(getattr(settings, "RETENTION_RUN_SLICES", 4))


def retention_run_start(
    *,
    policy: RetentionPolicy,
    actor: User | None = None,
    as_of: dt.datetime | None = None,
    enqueue: bool = True,
) -> RetentionRun:
    """Start a run of `policy`: freeze its settings, split the customer ids into slices and (after commit)
    start one chain of batch tasks per slice. Raises RetentionRunActive if a run of it is in progress."""
    as_of = as_of or timezone.now()
    with transaction.atomic():
        with connection.cursor() as cur:
            # Serialises concurrent starts of one policy (beat and an admin, two beats …); the partial unique
            # constraint on running runs is the backstop.
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [RETENTION_LOCK_NS, policy.pk])
        if RetentionRun.objects.filter(policy=policy, status=RetentionRun.Status.RUNNING).exists():
            raise RetentionRunActive(f"ポリシー「{policy.name}」は実行中です。終了後に再度実行してください。")
        run = RetentionRun.objects.create(
            policy=policy,
            as_of=as_of,
            started_by=actor,
            action=policy.action,
            scope=policy.scope,
            trigger=policy.trigger,
            days=policy.days,
            consent_purpose=policy.consent_purpose,
            batch_size=policy.batch_size,
        )
        if participants.record_scope(policy.scope) is not None:
            return _records_run_start(run, policy, as_of, enqueue)
        if policy.scope not in selectors.CUSTOMER_SCOPES:
            return _run_close(run, RetentionRun.Status.UNSUPPORTED, "この対象の処理は未導入です。")
        if policy.trigger == RetentionPolicy.Trigger.CONSENT_WITHDRAWN:
            try:
                selectors.consent_withdrawn_customer_ids(policy.consent_purpose, policy.days, as_of)
            except selectors.ConsentUnavailable as exc:
                return _run_close(run, RetentionRun.Status.FAILED, str(exc))
        bounds = Customer.objects.aggregate(lo=Min("pk"), hi=Max("pk"))
        ranges = rules.id_slices((bounds["lo"] or 1) - 1, bounds["hi"] or 0, _slices_wanted())
        slices = RetentionRunSlice.objects.bulk_create(
            [RetentionRunSlice(run=run, lo=lo, hi=hi, cursor=lo) for lo, hi in ranges]
        )
        if not slices:
            return _run_close(run, RetentionRun.Status.COMPLETED, "")
        if enqueue:
            transaction.on_commit(lambda: _enqueue_slices([(s.pk, s.cursor) for s in slices]))
    log.info("retention run %s of policy %s started with %d slices", run.pk, policy.pk, len(slices))
    return run


def _records_run_start(
    run: RetentionRun, policy: RetentionPolicy, as_of: dt.datetime, enqueue: bool
) -> RetentionRun:
    """A run over the records of an app above crm (participants.record_scope): one slice whose cursor
    counts its batches; each batch removes up to batch_size due rows (retention_slice_advance). Records
    are removed whole: the only action is erase."""
    if policy.action != Action.ERASE:
        return _run_close(run, RetentionRun.Status.FAILED, "この対象は「消去」の処理のみ選べます。")
    try:
        selectors.records_due(policy, as_of)
    except ValueError as exc:
        return _run_close(run, RetentionRun.Status.FAILED, str(exc))
    sl = RetentionRunSlice.objects.create(run=run, lo=0, hi=1, cursor=0)
    if enqueue:
        transaction.on_commit(lambda: _enqueue_slices([(sl.pk, sl.cursor)]))
    return run


def _records_batch(sl: RetentionRunSlice, policy: RetentionPolicy, as_of: dt.datetime) -> bool:
    """Remove the next batch of due records of a record scope; True when more may be left. The predicate
    is the statement's own filter; rows another transaction holds (a download, a build) are skipped (SKIP
    LOCKED), and the next run sees them again. The scope's `remove` acts on the locked rows (by default a
    deletion the ORM audits, one entry per row, ids only)."""
    left = policy.batch_size
    dues = selectors.records_due(policy, as_of)  # ValueError for a scope nobody registered
    remove = cast("participants.RecordScope", participants.record_scope(policy.scope)).remove
    for due in dues:
        if left <= 0:
            break
        ids = list(
            due.select_for_update(skip_locked=True, of=("self",))
            .order_by("pk")
            .values_list("pk", flat=True)[:left]
        )
        if not ids:
            continue
        gone = remove(rows=due.filter(pk__in=ids), actor=sl.run.started_by)
        sl.examined += gone
        sl.erased += gone
        left -= gone
    return left <= 0


# The task that advances a slice (crm.retention.tasks), queued by name (crm.queue): the tasks import these
# services, so the services do not import the tasks back.
RUN_BATCH_TASK = "crm.retention.run_batch"


def _enqueue_slices(items: list[tuple[int, int]]) -> None:
    for slice_id, cursor in items:
        task_enqueue(RUN_BATCH_TASK, slice_id, cursor)


def _run_close(run: RetentionRun, status: str, note: str) -> RetentionRun:
    counts = run.live_counts()
    failures: Counter[str] = Counter()
    for f in run.slices.values_list("failures", flat=True):
        failures.update(f or {})
    for name, value in counts.items():
        setattr(run, name, value)
    run.failures = dict(failures)
    run.status = status
    run.note = note or run.note
    run.finished_at = timezone.now()
    run.save()
    return run


def retention_slice_advance(*, slice_id: int, expected_cursor: int, enqueue: bool = True) -> int | None:
    """Process the next batch of a slice, in one transaction. Returns the new cursor when more is left.

    Safe when a message is delivered twice or after a crash: the slice row is locked and its cursor must be
    the one the message carries; otherwise the batch was already done and this call does nothing.
    """
    with transaction.atomic():
        with connection.cursor() as cur:
            # Asynchronous commit is safe here and only here: the batch and the cursor that records it commit
            # together, so a crash that loses the last commits loses both, and the batch is simply done again.
            cur.execute("SET LOCAL synchronous_commit TO OFF")
        sl = (
            RetentionRunSlice.objects.select_for_update(of=("self",))
            .select_related("run")
            .filter(pk=slice_id)
            .first()
        )
        if (
            sl is None
            or sl.done
            or sl.cursor != expected_cursor
            or sl.run.status != RetentionRun.Status.RUNNING
        ):
            return None
        run = sl.run
        policy = run.frozen_policy()
        as_of = run.as_of
        if participants.record_scope(policy.scope) is not None:
            more = _records_batch(sl, policy, as_of)
            return _slice_step(sl, sl.cursor + 1, not more, enqueue)
        in_range = Customer.objects.filter(pk__gt=sl.cursor, pk__lte=sl.hi)
        # Keyset walk: the window ends at the batch_size-th due customer (or at the slice end).
        due_ids = list(
            in_range.filter(selectors.due_q(policy, as_of))
            .order_by("pk")
            .values_list("pk", flat=True)[: policy.batch_size]
        )
        end = due_ids[-1] if len(due_ids) == policy.batch_size else sl.hi
        window = Customer.objects.filter(pk__gt=sl.cursor, pk__lte=end)
        examined = window.count()
        n_held = selectors.held(policy, as_of, window).count() if due_ids else 0
        todo = selectors.actionable(policy, as_of, window)
        # SKIP LOCKED: a row another transaction holds (a request-desk erasure, a hold being placed) is left
        # to that transaction; the next run evaluates it again.
        locked = list(
            todo.select_for_update(skip_locked=True, of=("self",)).order_by("pk").values_list("pk", flat=True)
        )
        out = act(
            ids=locked,
            scope=policy.scope,
            action=policy.action,
            predicate=selectors.actionable(policy, as_of),
            as_of=as_of,
            reason=f"policy:{policy.pk}",
            actor=run.started_by,
            policy=policy,
            run=run,
            trigger=policy.trigger,
            days=policy.days,
        )
        skipped_locked = len(due_ids) - n_held - len(locked) if due_ids else 0
        sl.examined += examined
        sl.skipped_hold += n_held
        counter = {
            Action.ERASE: "erased",
            Action.ANONYMISE: "anonymised",
            Action.PSEUDONYMISE: "pseudonymised",
        }[Action(policy.action)]
        setattr(sl, counter, getattr(sl, counter) + len(out.acted))
        failures = Counter(sl.failures or {})
        failures.update(out.failures)
        if skipped_locked > 0:
            failures["skipped_locked"] += skipped_locked
        sl.failed += out.failed
        sl.failures = dict(failures)
        return _slice_step(sl, end, end >= sl.hi, enqueue)


def _slice_step(sl: RetentionRunSlice, cursor: int, done: bool, enqueue: bool) -> int | None:
    """Record a batch of a slice (inside its transaction) and enqueue the next one, or close the run when
    this was the last slice's last batch. Returns the new cursor when more is left."""
    sl.cursor = cursor
    sl.done = done
    sl.batches += 1
    sl.heartbeat_at = timezone.now()
    sl.save()
    if sl.done:
        run = RetentionRun.objects.select_for_update().get(pk=sl.run_id)
        if run.status == RetentionRun.Status.RUNNING and not run.slices.filter(done=False).exists():
            _run_close(run, RetentionRun.Status.COMPLETED, "")
        return None
    slice_id = sl.pk
    if enqueue:
        transaction.on_commit(lambda: _enqueue_slices([(slice_id, cursor)]))
    return cursor


def retention_slice_fail(*, slice_id: int, error: BaseException) -> None:
    """Record that a slice gave up after its retries, and fail the run (codes only: no values)."""
    code = type(error).__name__
    sqlstate = getattr(getattr(error, "__cause__", None), "sqlstate", None) or getattr(
        error, "sqlstate", None
    )
    with transaction.atomic():
        sl = RetentionRunSlice.objects.select_for_update().select_related("run").filter(pk=slice_id).first()
        if sl is None or sl.done:
            return
        sl.error = f"{code} {sqlstate or ''}".strip()
        sl.save(update_fields=["error"])
        run = RetentionRun.objects.select_for_update().get(pk=sl.run_id)
        if run.status == RetentionRun.Status.RUNNING:
            _run_close(run, RetentionRun.Status.FAILED, f"区間 {sl.lo}–{sl.hi} が失敗しました: {sl.error}")


def retention_run_to_completion(*, run: RetentionRun) -> RetentionRun:
    """Walk every slice of a run in this process (tests, benchmarks, and `manage.py` use; no broker)."""
    for sl in list(run.slices.filter(done=False)):
        cursor: int | None = sl.cursor
        while cursor is not None:
            cursor = retention_slice_advance(slice_id=sl.pk, expected_cursor=cursor, enqueue=False)
    run.refresh_from_db()
    return run


def heartbeat_seconds() -> int:
    """RETENTION_HEARTBEAT_SECONDS: a slice whose last batch is older than this is considered stalled."""
    return int(getattr(settings, "RETENTION_HEARTBEAT_SECONDS", 30))


def retention_resume_stalled(*, stale_after_seconds: int | None = None) -> int:
    """Re-enqueue the batch of every unfinished slice whose heartbeat is older than `stale_after_seconds`
    (default RETENTION_HEARTBEAT_SECONDS); inside the caller's transaction, enqueued after commit.

    Covers a worker killed between a batch's commit and the enqueue of the next one, and a message left
    unacknowledged by a dead worker until the broker's visibility timeout. Each slice is claimed by one
    conditional UPDATE that moves its heartbeat to now: of two watchdogs at once (a beat tick and a
    restarting worker) exactly one wins, and the next claim waits another full interval. A slice whose batch
    is running right now holds its row lock and is skipped (SKIP LOCKED): it is not stalled. A duplicate
    message is harmless anyway (the cursor check drops it).
    """
    stale = heartbeat_seconds() if stale_after_seconds is None else stale_after_seconds
    now = timezone.now()
    limit = now - datetime.timedelta(seconds=stale)
    slices, runs = table(RetentionRunSlice), table(RetentionRun)
    s_id, r_id = pk(RetentionRunSlice), pk(RetentionRun)
    beat, done, cursor, run_fk = (
        column(RetentionRunSlice, n) for n in ("heartbeat_at", "done", "cursor", "run")
    )
    status = column(RetentionRun, "status")
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {slices} s SET {beat} = %s "  # noqa: S608
            f"WHERE s.{s_id} IN (SELECT x.{s_id} FROM {slices} x JOIN {runs} r ON r.{r_id} = x.{run_fk} "
            f"WHERE NOT x.{done} AND r.{status} = %s AND x.{beat} <= %s "
            "FOR UPDATE OF x SKIP LOCKED) "
            f"AND NOT s.{done} AND s.{beat} <= %s RETURNING s.{s_id}, s.{cursor}",
            [now, RetentionRun.Status.RUNNING, limit, limit],
        )
        items = sorted((int(i), int(c)) for i, c in cur.fetchall())
    if items:
        transaction.on_commit(lambda: _enqueue_slices(items))
    return len(items)


def retention_run_due_policies(*, as_of: dt.datetime | None = None) -> list[RetentionRun]:
    """Start a run of every enabled policy that is not already running (Celery beat)."""
    runs = []
    for policy in RetentionPolicy.objects.filter(enabled=True).order_by("pk"):
        try:
            runs.append(retention_run_start(policy=policy, as_of=as_of))
        except RetentionRunActive:
            log.info("retention policy %s still running; not started again", policy.pk)
    return runs
