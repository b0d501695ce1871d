"""Celery tasks of breach response. Thin: ids in, one service call, safe to run twice."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from incidents import services
from incidents.services import NoticeSenderBusy


@shared_task(
    name=services.SCOPE_BATCH_TASK,
    bind=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    max_retries=5,
    # One batch (10,000 ids, or one upload's set-based match) takes seconds: far below the visibility timeout.
    soft_time_limit=240,
    time_limit=300,
)
def incident_scope_batch(self: Any, scope_id: int) -> bool:
    """Do the next batch of scope `scope_id` (the service enqueues the one after, on commit)."""
    try:
        return services.incident_scope_advance(scope_id=scope_id)
    except (OperationalError, InterfaceError):
        if self.request.retries >= self.max_retries:
            services.incident_scope_fail(scope_id=scope_id, error=OperationalError("retries exhausted"))
        raise
    except Exception as exc:
        services.incident_scope_fail(scope_id=scope_id, error=exc)
        raise


@shared_task(
    name=services.NOTICES_BATCH_TASK,
    # NoticeSenderBusy: another worker is sending this incident's notices; try again once it may be done.
    autoretry_for=(OperationalError, InterfaceError, NoticeSenderBusy),
    retry_backoff=2,
    max_retries=8,
    soft_time_limit=240,
    time_limit=300,
)
def incident_notices_batch(incident_id: int) -> int:
    """Send the next batch of an incident's notices (the service enqueues the next one). Safe to run twice:
    one sender per incident at a time, each notice claimed once (incidents.services)."""
    return services.incident_notices_send_batch(incident_id=incident_id)
