"""Individual notices (issue #15, step 5): once per person; two workers never take the same notice."""

from __future__ import annotations

import threading

import pytest
from django.core import mail

from incidents import services
from incidents.models import IncidentNotice
from incidents.services import IncidentError
from tests.factories import CustomerFactory
from tests.incidents.conftest import make_incident

pytestmark = pytest.mark.django_db


@pytest.fixture
def scoped(privacy_officer, customer, team):
    """An incident affecting the standing customer and one more."""
    other = CustomerFactory(team=team, email="hanako@example.com")
    incident = make_incident(privacy_officer, report_summary="誤送信の概要", report_cause="宛先の誤り")
    scope = services.incident_scope_by_upload(
        incident=incident,
        actor=privacy_officer,
        data=f"M000000001\n{other.member_no}\n".encode(),
        enqueue=False,
    )
    services.incident_scope_advance(scope_id=scope.pk)
    return incident


def test_each_affected_person_is_notified_once(scoped, privacy_officer):
    # given notices queued twice for the same incident
    assert services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False) == 2
    assert services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False) == 0
    # when the batches run until nothing is left, and once more
    for _ in range(10):
        if not services.incident_notices_send_batch(incident_id=scoped.pk, enqueue=False):
            break
    services.incident_notices_send_batch(incident_id=scoped.pk, enqueue=False)
    # then each person got exactly one e-mail with the items of 規則10, and both notices are "sent"
    recipients = sorted(m.to[0] for m in mail.outbox)
    assert recipients == ["hanako@example.com", "taro.yamada@example.com"]
    assert "誤送信の概要" in mail.outbox[0].body and "宛先の誤り" in mail.outbox[0].body
    assert set(IncidentNotice.objects.values_list("status", flat=True)) == {"sent"}


@pytest.mark.django_db(transaction=True)
def test_a_notice_claimed_by_another_worker_is_skipped(scoped, privacy_officer, customer, django_db_blocker):
    # given two queued notices (committed), one of them locked by another worker's open transaction
    services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False)
    first = IncidentNotice.objects.get(customer=customer)
    locked, release, done = threading.Event(), threading.Event(), threading.Event()

    def other_worker() -> None:
        from django.db import connections

        with django_db_blocker.unblock():
            conn = connections.create_connection("default")
            try:
                with conn.cursor() as cursor:
                    cursor.execute("BEGIN")
                    table = IncidentNotice._meta.db_table
                    cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [first.pk])
                    locked.set()
                    release.wait(timeout=30)
                    cursor.execute("ROLLBACK")
            finally:
                conn.close()
                done.set()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert locked.wait(timeout=30)
        # when this worker sends a batch
        services.incident_notices_send_batch(incident_id=scoped.pk, enqueue=False)
    finally:
        release.set()
        thread.join(timeout=30)
    # then it sent only the unlocked one
    assert [m.to[0] for m in mail.outbox] == ["hanako@example.com"]
    first.refresh_from_db()
    assert first.status == IncidentNotice.Status.PENDING


def test_a_closed_incident_queues_no_notice(scoped, privacy_officer):
    for step in ("contained", "assessed", "notified", "recovered", "closed"):
        services.incident_transition(incident=scoped, to=step, actor=privacy_officer)
    with pytest.raises(IncidentError):
        services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False)
    assert not IncidentNotice.objects.exists()
