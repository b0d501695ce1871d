"""Celery tasks of the retention engine (imported by crm.tasks). Thin: ids in, one service call, safe twice.

A run is a set of chains, one per id slice: each `retention_run_batch` message does one batch in one
transaction and enqueues the next after commit. Several workers take different slices at once.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.db import DatabaseError, InterfaceError, OperationalError, transaction

from crm.retention import services
from crm.retention.models import RetentionPolicy
from crm.retention.services.runs import RUN_BATCH_TASK

__all__ = [
    "retention_resume_stalled",
    "retention_run_batch",
    "retention_run_due_policies",
    "retention_run_policy",
]


@shared_task(
    name=RUN_BATCH_TASK,
    bind=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
    # One batch takes seconds: far below the broker's visibility timeout, so no redelivery while running.
    soft_time_limit=240,
    time_limit=300,
)
def retention_run_batch(self: Any, slice_id: int, cursor: int) -> int | None:
    """Process the batch of slice `slice_id` that starts after `cursor`; a stale duplicate does nothing."""
    try:
        return services.retention_slice_advance(slice_id=slice_id, expected_cursor=cursor)
    except (OperationalError, InterfaceError):
        if self.request.retries >= self.max_retries:
            services.retention_slice_fail(slice_id=slice_id, error=DatabaseError("retries exhausted"))
        raise
    except Exception as exc:
        services.retention_slice_fail(slice_id=slice_id, error=exc)
        raise


@shared_task(name="crm.retention.run_policy")
def retention_run_policy(policy_id: int) -> int | None:
    """Start a run of one policy (no-op when it is already running)."""
    policy = RetentionPolicy.objects.filter(pk=policy_id).first()
    if policy is None:
        return None
    try:
        return services.retention_run_start(policy=policy).pk
    except services.RetentionRunActive:
        return None


@shared_task(name="crm.retention.run_due_policies")
def retention_run_due_policies() -> list[int]:
    """Celery beat entry point: start every enabled policy that is not running."""
    return [run.pk for run in services.retention_run_due_policies()]


@shared_task(name="crm.retention.resume_stalled")
def retention_resume_stalled(stale_after_seconds: int | None = None) -> int:
    """Re-enqueue unfinished slices whose heartbeat is older than `stale_after_seconds` (default
    RETENTION_HEARTBEAT_SECONDS; beat runs this every 30 seconds). Each stalled slice is claimed once."""
    with transaction.atomic():
        return services.retention_resume_stalled(stale_after_seconds=stale_after_seconds)


@worker_ready.connect
def _resume_on_worker_start(sender: Any = None, **kwargs: Any) -> None:
    """A worker that (re)starts picks up runs a killed worker left behind, without waiting for beat.

    Messages a SIGKILLed worker had taken stay unacknowledged in Redis until the visibility timeout; the
    cursor check makes the extra messages sent here harmless.
    """
    retention_resume_stalled.delay(0)
