"""The import task once through a real Celery worker on the real Redis: an uploaded file is imported, its
progress reaches the batch row, the file is removed."""

from __future__ import annotations

import signal
import time

import pytest
from celery import current_app

from crm.analytics import services
from crm.analytics.models import PurchaseImport
from crm.models import Purchase
from tests.factories import TeamFactory
from tests.marks import transactional_all_apps
from tests.services import celery_worker_start, worker_stop

pytestmark = [transactional_all_apps(), pytest.mark.worker]


def test_the_import_task_runs_in_a_real_worker(settings, tmp_path):
    # given a batch whose file waits in the import directory (the worker is told the same directory)
    settings.ANALYTICS_IMPORT_DIR = str(tmp_path)
    team = TeamFactory(code="worker-import")
    batch = PurchaseImport.objects.create(team=team, file_name="p.csv")
    lines = "".join(f"W-{i % 7},2026-04-{1 + i % 28:02d},{100 + i}\n" for i in range(500))
    services.import_file_path(batch.pk).write_text("external_id,purchased_at,amount\n" + lines)
    worker = celery_worker_start("analytics-test", concurrency=1, ANALYTICS_IMPORT_DIR=str(tmp_path))
    try:
        # when the task is sent by name, as the upload does after its commit
        current_app.send_task(services.PURCHASE_IMPORT_TASK, args=[batch.pk])
        deadline = time.monotonic() + 120
        # (the task removes the file once the service has marked the batch done: wait for both)
        while time.monotonic() < deadline:
            batch.refresh_from_db()
            file_left = services.import_file_path(batch.pk).exists()
            if batch.status == PurchaseImport.Status.DONE and not file_left:
                break
            time.sleep(0.2)
        # then the worker imported every row and removed the file
        assert batch.status == PurchaseImport.Status.DONE
        assert (batch.rows_total, batch.rows_inserted, batch.customers_created) == (500, 500, 7)
        assert Purchase.objects.filter(team=team).count() == 500
        assert not services.import_file_path(batch.pk).exists()
    finally:
        worker_stop(worker, signal.SIGTERM)
