"""Celery tasks of the crm app (thin: ids in, one service call)."""

from celery import shared_task

from crm.analytics.tasks import *  # noqa: F403
from crm.audit.sealing import audit_seal_pending
from crm.insights.tasks import *  # noqa: F403
from crm.integrations.tasks import *  # noqa: F403
from crm.retention.tasks import *  # noqa: F403


@shared_task(name="crm.tasks.audit_seal", ignore_result=True)
def audit_seal() -> int:
    """Safety net of the sealer process (`manage.py audit_sealer`): chain audit entries still pending when
    that process is down. Idempotent, and safe beside it (the chain lock serialises sealers)."""
    return audit_seal_pending()
