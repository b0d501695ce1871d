"""Celery tasks of the analytics area (imported by crm.tasks). Thin: ids in, one service call, safe twice."""

from __future__ import annotations

from celery import shared_task

from crm.analytics import services

__all__ = ["purchase_import_task"]


@shared_task(
    name=services.PURCHASE_IMPORT_TASK,
    # A 10,000,000-row file takes minutes (bench/README.md): below the broker's visibility timeout (1 h), so
    # the message is not delivered again while it runs; a second delivery finds the batch done or locked.
    soft_time_limit=3000,
    time_limit=3300,
    ignore_result=True,
)
def purchase_import_task(batch_id: int) -> str:
    """Import the uploaded file of batch `batch_id`, then delete the file (kept when the import failed, so
    the task can run again)."""
    path = services.import_file_path(batch_id)
    if not path.exists():
        return "missing"
    with path.open("rb") as stream:
        batch = services.purchase_import_run(batch_id=batch_id, stream=stream, actor=None)
    if batch.status in (batch.Status.DONE, batch.Status.REFUSED):
        path.unlink(missing_ok=True)
    return str(batch.status)
