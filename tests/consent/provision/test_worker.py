"""Provision records removed through a real Celery worker on the real Redis: the retention engine's record
scope runs as a chain of batch tasks, each deleting up to batch_size records (issue #16)."""

from __future__ import annotations

import datetime as dt
import signal
from zoneinfo import ZoneInfo

import pytest
import redis

from config.redis_url import redis_py_url
from consent.provision import services
from consent.provision.models import ProvisionRecord, Recipient
from crm.retention import services as retention_services
from crm.retention.models import RetentionPolicy, RetentionRun
from tests.crm.retention.test_worker import _start_worker
from tests.factories import CustomerFactory, TeamFactory, UserFactory
from tests.marks import transactional_all_apps
from tests.services import wait_until, worker_stop

pytestmark = [transactional_all_apps(), pytest.mark.worker]


def test_a_worker_removes_records_past_their_period_in_batches(settings):
    broker = redis.Redis.from_url(redis_py_url(settings.CELERY_BROKER_URL), socket_connect_timeout=3)
    broker.ping()
    broker.flushdb()
    # given five records made in 2020 (kept through 2023) and one made in 2026
    officer = UserFactory(username="worker-officer", is_superuser=True)
    partner = Recipient.objects.create(name="提携先", kind=Recipient.Kind.THIRD_PARTY)
    team = TeamFactory(code="worker-provision")
    for on in [dt.date(2020, 4, i) for i in range(1, 6)] + [dt.date(2026, 4, 1)]:
        services.provision_record(
            actor=officer,
            recipient=partner,
            customer_ids=[CustomerFactory(team=team).pk],
            data_items=["crm.Customer.email"],
            basis="opt_out",
            opt_out_notified_on=dt.date(2020, 1, 1),
            on=on,
        )
    policy = RetentionPolicy.objects.create(
        name="提供記録（規則21）",
        scope="provision_records",
        trigger="period_ended",
        days=0,
        action="erase",
        legal_basis="規則21",
        batch_size=2,
    )
    worker = _start_worker()
    try:
        # when a run starts (its batches go to the broker after the commit)
        run = retention_services.retention_run_start(
            policy=policy, as_of=dt.datetime(2026, 12, 1, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
        )
        wait_until("the run to finish", lambda: RetentionRun.objects.get(pk=run.pk).status != "running")
    finally:
        worker_stop(worker, signal.SIGTERM)
    # then the worker removed the five, in three batches, and kept the recent one
    run.refresh_from_db()
    assert (run.status, run.erased) == ("completed", 5)
    assert run.slices.get().batches == 3
    assert list(ProvisionRecord.objects.values_list("first_provided_on", flat=True)) == [dt.date(2026, 4, 1)]
