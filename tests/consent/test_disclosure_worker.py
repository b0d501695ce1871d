"""The disclosure package through a real Celery worker on the real Redis: a worker builds it; a worker killed
(SIGKILL) in the middle of publishing leaves no package, half or whole, and the build succeeds when a worker
starts again."""

from __future__ import annotations

import datetime as dt
import io
import json
import signal
import subprocess
import zipfile
from pathlib import Path

import psycopg
import pytest
import redis

from config.redis_url import redis_py_url
from consent.disclosure import selectors, services
from consent.disclosure.models import DisclosurePackage
from consent.requests.models import DataSubjectRequest, RequestState
from crm.models import CustomerEvent
from crm.permissions import ROLE_SUPPORT
from tests.factories import CustomerFactory, TeamFactory, UserFactory
from tests.marks import transactional_all_apps
from tests.services import (
    celery_worker_start,
    database_conninfo,
    wait_until,
    waiting_sessions_end,
    worker_stop,
)

pytestmark = [transactional_all_apps(), pytest.mark.worker]

WHEN = dt.datetime(2026, 4, 1, 1, 0, tzinfo=dt.UTC)
EVENTS = 200


def _start_worker(package_dir: Path) -> subprocess.Popen[bytes]:
    return celery_worker_start("disclosure-test", concurrency=1, DISCLOSURE_PACKAGE_DIR=str(package_dir))


@pytest.fixture
def broker(settings):
    """The real Redis (the test fails, not skips, when it is unreachable), with an empty queue."""
    client = redis.Redis.from_url(redis_py_url(settings.CELERY_BROKER_URL), socket_connect_timeout=3)
    client.ping()
    client.flushdb()
    return client


@pytest.fixture
def package_dir(settings, tmp_path):
    settings.DISCLOSURE_PACKAGE_DIR = str(tmp_path / "packages")
    return tmp_path / "packages"


def _verified_request(handler) -> DataSubjectRequest:
    customer = CustomerFactory(team=TeamFactory(code="worker-package"), email="worker@example.com")
    CustomerEvent.objects.bulk_create(
        CustomerEvent(customer=customer, kind="page_view", occurred_at=WHEN, properties={"n": i})
        for i in range(EVENTS)
    )
    dsr = DataSubjectRequest.objects.create(
        kind="disclosure", channel="email", received_at=WHEN, customer=customer, handler=handler
    )
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(
        identity_verified_at=WHEN, state=RequestState.IN_PROGRESS
    )
    return DataSubjectRequest.objects.get(pk=dsr.pk)


def _state(package_id: int) -> str:
    return DisclosurePackage.objects.filter(pk=package_id).values_list("state", flat=True).get()


def _assert_whole(package: DisclosurePackage, package_dir: Path) -> None:
    """Exactly one file for the package, the published one, which opens and matches its hash."""
    assert sorted(p.name for p in package_dir.iterdir()) == [package.file_name]
    selectors.package_verify(package)
    zf = zipfile.ZipFile(io.BytesIO(b"".join(selectors.package_chunks(package))))
    sections = {s["key"]: s for s in json.loads(zf.read("disclosure.json"))["sections"]}
    assert sections["crm.events"]["count"] == EVENTS
    assert sections["crm.customer"]["rows"][0]["email"] == "worker@example.com"


def test_a_real_worker_builds_the_package(broker, package_dir):
    # given a worker, and a verified disclosure request
    handler = UserFactory(username="worker-handler", roles=[ROLE_SUPPORT])
    dsr = _verified_request(handler)
    worker = _start_worker(package_dir)
    try:
        # when the handler orders the package (the build is enqueued after commit)
        package = services.disclosure_package_order(request=dsr, actor=handler)
        # then the worker builds it
        wait_until("the package to be ready", lambda: _state(package.pk) != DisclosurePackage.State.BUILDING)
    finally:
        worker_stop(worker, signal.SIGTERM)
    package.refresh_from_db()
    assert package.state == DisclosurePackage.State.READY and package.progress == 100
    _assert_whole(package, package_dir)


def test_a_worker_killed_while_publishing_leaves_no_package_and_the_rebuild_succeeds(broker, package_dir):
    # given a verified request's package, whose row another session holds locked: the build can do all its
    # work but must wait at the conditional UPDATE that publishes it
    handler = UserFactory(username="kill-handler", roles=[ROLE_SUPPORT])
    package = services.disclosure_package_order(
        request=_verified_request(handler), actor=handler, enqueue=False
    )
    blocker = psycopg.connect(database_conninfo())
    blocker.execute("SELECT id FROM consent_disclosurepackage WHERE id = %s FOR UPDATE", [package.pk])
    worker = _start_worker(package_dir)  # on start it picks up the package left "building"
    try:
        with psycopg.connect(database_conninfo(), autocommit=True) as watch:
            wait_until(
                "the build waiting to publish",
                lambda: (
                    watch.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND query ILIKE 'UPDATE%%consent_disclosurepackage%%'"
                    ).fetchone()[0]
                    > 0
                ),
            )
        # (its sealed file is written, under its temporary name)
        assert [p.name.endswith(".partial") for p in package_dir.iterdir()] == [True]
        # when the worker is killed right there
        worker_stop(worker)
        waiting_sessions_end(wait_event_type="Lock")
        blocker.rollback()
        # then there is no package: the row still builds, names no file, and no file is published
        package.refresh_from_db()
        assert package.state == DisclosurePackage.State.BUILDING and package.file_name == ""
        assert not [p for p in package_dir.iterdir() if not p.name.startswith(".")]
        assert selectors.downloadable(user=handler, package_id=package.pk) is None

        # when a worker starts again, it takes the build up by itself
        worker = _start_worker(package_dir)
        wait_until("the rebuild", lambda: _state(package.pk) != DisclosurePackage.State.BUILDING)
    finally:
        blocker.close()
        worker_stop(worker, signal.SIGTERM)
    # then the package is whole, and nothing of the killed build is left
    package.refresh_from_db()
    assert package.state == DisclosurePackage.State.READY
    _assert_whole(package, package_dir)
