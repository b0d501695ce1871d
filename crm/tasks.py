"""Celery tasks of the crm app (thin: ids in, one service call)."""

from celery import shared_task

from crm.retention.tasks import *  # noqa: F403


@shared_task(name="crm.tasks.audit_seal", ignore_result=True)
def audit_seal() -> int:
    """Chain audit entries still pending (a writer that died between commit and its own seal). Idempotent."""
    from crm.audit import audit_seal_pending

    return audit_seal_pending()
