"""Notices through a real Celery worker on the real Redis and PostgreSQL: the worker is killed with SIGKILL
right after an e-mail left and before its notice was marked sent; after a restart and "resume" every affected
person has exactly one message in the file backend's directory (issue #15)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import psycopg
import pytest
import redis

from config.redis_url import redis_py_url
from incidents import services
from incidents.models import IncidentNotice, IncidentScope
from tests.crm.retention.test_worker import _start_worker_with
from tests.factories import CustomerFactory, TeamFactory
from tests.incidents.blocking_mail import BLOCK_KEY, messages_in
from tests.incidents.conftest import make_incident
from tests.marks import transactional_all_apps
from tests.services import database_conninfo, wait_until, waiting_sessions_end, worker_stop

pytestmark = [transactional_all_apps(), pytest.mark.worker]

N = 30  # affected people: fewer than one batch (services.NOTICE_BATCH), so the kill lands mid-batch
BLOCK_AT = 12  # the worker is stopped right after writing this many messages


def _start_worker(mail_dir: Path, **extra: str) -> subprocess.Popen[bytes]:
    """The retention test's real worker, writing its e-mail to `mail_dir` through the blocking backend."""
    backend = "tests.incidents.blocking_mail.BlockingFileBackend"
    return _start_worker_with({"EMAIL_BACKEND": backend, "EMAIL_FILE_PATH": str(mail_dir), **extra})


def _statuses(incident_id: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for status in IncidentNotice.objects.filter(incident_id=incident_id).values_list("status", flat=True):
        out[status] = out.get(status, 0) + 1
    return out


def test_a_notice_batch_killed_with_kill_9_and_resumed_sends_each_person_exactly_once(
    settings, tmp_path, privacy_officer
):
    # given the real Redis (the test fails, not skips, when it is unreachable) with an empty queue
    broker = redis.Redis.from_url(redis_py_url(settings.CELERY_BROKER_URL), socket_connect_timeout=3)
    broker.ping()
    broker.flushdb()
    # and an incident whose N affected people are scoped and queued for notice
    team = TeamFactory(code="notice-worker")
    people = [CustomerFactory(team=team, member_no=f"N{i:05d}", email=f"n{i}@example.com") for i in range(N)]
    incident = make_incident(privacy_officer, report_summary="概要")
    upload = "\n".join(c.member_no for c in people).encode()
    scope = services.incident_scope_by_upload(
        incident=incident, actor=privacy_officer, data=upload, enqueue=False
    )
    services.incident_scope_advance(scope_id=scope.pk)
    assert IncidentScope.objects.get(pk=scope.pk).added == N
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()

    # when a real worker sends them and is SIGKILLed right after its BLOCK_AT-th e-mail left, before that
    # notice is marked sent (the blocking backend waits on an advisory lock this test holds)
    blocker = psycopg.connect(database_conninfo(), autocommit=True)
    blocker.execute("SELECT pg_advisory_lock(%s)", [BLOCK_KEY])
    worker = _start_worker(mail_dir, INCIDENT_TEST_BLOCK_AT=str(BLOCK_AT))
    try:
        services.incident_notices_queue(incident=incident, actor=privacy_officer)
        with psycopg.connect(database_conninfo(), autocommit=True) as watch:
            wait_until(
                "the worker to wait after its e-mail",
                lambda: (
                    watch.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
                    ).fetchone()[0]
                    > 0
                ),
            )
        worker_stop(worker)
        # the dead worker's session ends (PostgreSQL notices a client gone only on its next write)
        waiting_sessions_end(wait_event="advisory")
        blocker.close()
        # then mid-batch: BLOCK_AT e-mails left, the last of them still "sending", the rest pending
        assert len(messages_in(mail_dir)) == BLOCK_AT
        assert _statuses(incident.pk) == {"sent": BLOCK_AT - 1, "sending": 1, "pending": N - BLOCK_AT}

        # when a worker is started again and the notices are resumed (the admin's 「通知を再開」)
        worker = _start_worker(mail_dir)
        services.incident_notices_resume(incident=incident, actor=privacy_officer)
        wait_until("every notice to be sent", lambda: _statuses(incident.pk) == {"sent": N})
    finally:
        worker_stop(worker, signal.SIGTERM)

    # then each person has exactly one message, under their notice's own Message-ID
    sent = messages_in(mail_dir)
    assert len(sent) == N
    expected = {
        services.notice_message_id(incident.pk, pk)
        for pk in IncidentNotice.objects.filter(incident=incident).values_list("pk", flat=True)
    }
    assert set(sent) == expected
    recipients = sorted(
        line[4:].decode()
        for path in mail_dir.iterdir()
        for line in path.read_bytes().splitlines()
        if line.startswith(b"To: ")
    )
    assert recipients == sorted(c.email for c in people)
