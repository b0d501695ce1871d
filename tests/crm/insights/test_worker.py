"""The KPI cache refresh once through a real Celery worker on the real Redis: the page's 「再計算する」
enqueues the task after commit, a worker computes every month and the page's cache then holds them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from django.core.cache import cache
from django.utils import timezone

from crm import services as crm_services
from crm.insights import rules, selectors, services
from tests.factories import CustomerFactory, TeamFactory
from tests.marks import transactional_all_apps
from tests.services import celery_worker_start

pytestmark = [transactional_all_apps(), pytest.mark.worker]
ROOT = Path(__file__).resolve().parents[3]


def test_refresh_runs_in_a_worker_and_fills_the_cache():
    # given a customer with a purchase this month, and an empty KPI cache
    team = TeamFactory(code="kpi-worker")
    customer = CustomerFactory(team=team)
    crm_services.purchase_record(
        team=team,
        customer=customer,
        order_no="KPI-W-1",
        amount=7000,
        channel="web_form",
        purchased_at=timezone.now(),
    )
    months = rules.months_back(timezone.localdate(), services.KPI_MONTHS)
    keys = [f"{selectors.CACHE_PREFIX}:{m.isoformat()}" for m in months]
    cache.delete_many(keys)
    worker = celery_worker_start("insights-test", concurrency=1, pool="solo")
    try:
        # when the refresh is enqueued (after commit, as the page's button does)
        services.kpi_cache_refresh_enqueue()
        # then a worker computes every month into the cache
        end = time.monotonic() + 120
        while time.monotonic() < end and len(cache.get_many(keys)) < len(keys):
            time.sleep(0.2)
        cached = cache.get_many(keys)
        assert len(cached) == len(keys)
        # and the current month holds this month's buyer
        current = cached[keys[-1]]
        assert current["ltv"] == 7000.0 and current["new_customers"] == 1
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
