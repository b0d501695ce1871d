"""Celery tasks of the integration API (imported by crm.tasks)."""

from __future__ import annotations

from celery import shared_task

from crm.integrations.services import idempotency_purge_expired


@shared_task(name="crm.integrations.idempotency_purge")
def idempotency_purge() -> int:
    """Delete expired Idempotency-Key records in batches (schedule hourly with beat; safe to run twice)."""
    return idempotency_purge_expired()
