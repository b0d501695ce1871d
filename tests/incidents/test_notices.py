"""Individual notices (issue #15, step 5): once per person; two workers never take the same notice."""

from __future__ import annotations

import threading

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import translation

from crm.models import AuditEntry
from incidents import services
from incidents.models import IncidentNotice
from incidents.services import IncidentError
from tests.factories import CustomerFactory
from tests.incidents.conftest import make_incident, to_recovered

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


@pytest.mark.parametrize("in_flight", ["pending", "sending", "unknown"])
def test_an_incident_is_not_closed_while_its_notices_are_in_flight(scoped, privacy_officer, in_flight):
    # given queued notices, one of them pending, being sent or of unknown outcome
    services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False)
    IncidentNotice.objects.filter(pk=IncidentNotice.objects.order_by("pk")[0].pk).update(status=in_flight)
    IncidentNotice.objects.exclude(status=in_flight).update(status="sent")
    to_recovered(scoped, privacy_officer)
    # when the incident is closed, then it is refused (APPI 26(2)), in the user's language, and stays open
    with pytest.raises(IncidentError, match="法第26条2項"):
        services.incident_transition(incident=scoped, to="closed", actor=privacy_officer)
    with translation.override("en"), pytest.raises(IncidentError, match=r"APPI Art\. 26\(2\)"):
        services.incident_transition(incident=scoped, to="closed", actor=privacy_officer)
    scoped.refresh_from_db()
    assert scoped.status == "recovered"


def test_an_incident_closes_once_every_notice_has_an_outcome(scoped, privacy_officer):
    # given one notice sent and one failed (outcomes, though not both good ones)
    services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False)
    _run_batches(scoped)
    first = IncidentNotice.objects.order_by("pk")[0]
    IncidentNotice.objects.filter(pk=first.pk).update(status=IncidentNotice.Status.FAILED)
    to_recovered(scoped, privacy_officer)
    # when it is closed, then it is
    services.incident_transition(incident=scoped, to="closed", actor=privacy_officer)
    scoped.refresh_from_db()
    assert scoped.status == "closed"


def test_a_closed_incident_sends_nothing(scoped, privacy_officer):
    # given a closed incident holding a pending notice (a row from before closing refused them)
    services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False)
    held = list(IncidentNotice.objects.values_list("pk", "status"))
    IncidentNotice.objects.update(status="sent")
    to_recovered(scoped, privacy_officer)
    services.incident_transition(incident=scoped, to="closed", actor=privacy_officer)
    for pk, status in held:
        IncidentNotice.objects.filter(pk=pk).update(status=status)
    # when the sender runs, then no e-mail leaves and the notices stay as they were
    assert services.incident_notices_send_batch(incident_id=scoped.pk, enqueue=False) == 0
    assert mail.outbox == []
    assert set(IncidentNotice.objects.values_list("status", flat=True)) == {"pending"}


def test_pending_notices_are_withdrawn_with_their_reason_and_the_incident_closes(scoped, privacy_officer):
    # given two queued notices, one of them already claimed by a sender
    services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False)
    sending = IncidentNotice.objects.order_by("pk")[0]
    IncidentNotice.objects.filter(pk=sending.pk).update(status="sending")
    # when the pending ones are withdrawn
    n = services.incident_notices_cancel(incident=scoped, actor=privacy_officer, reason="郵送で通知するため")
    # then only the pending one is, with the reason on the timeline and one audit entry; the sender's stays
    assert n == 1
    assert dict(IncidentNotice.objects.values_list("pk", "status"))[sending.pk] == "sending"
    others = IncidentNotice.objects.exclude(pk=sending.pk)
    assert set(others.values_list("status", flat=True)) == {"cancelled"}
    assert scoped.timeline.filter(note__contains="郵送で通知するため").count() == 1
    assert AuditEntry.objects.filter(object_pk=f"incident-notice-cancel:{scoped.pk}").count() == 1
    # and once the one being sent has its outcome, the incident closes, and the sender sends nothing more
    IncidentNotice.objects.filter(pk=sending.pk).update(status="sent")
    assert services.incident_notices_send_batch(incident_id=scoped.pk, enqueue=False) == 0
    to_recovered(scoped, privacy_officer)
    services.incident_transition(incident=scoped, to="closed", actor=privacy_officer)
    assert mail.outbox == []


def test_withdrawing_needs_a_reason_and_the_change_permission(scoped, privacy_officer, outsider):
    services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False)
    with pytest.raises(IncidentError, match="理由"):
        services.incident_notices_cancel(incident=scoped, actor=privacy_officer, reason="  ")
    with translation.override("en"), pytest.raises(IncidentError, match="Enter the reason"):
        services.incident_notices_cancel(incident=scoped, actor=privacy_officer, reason="")
    with pytest.raises(IncidentError, match="500"):
        services.incident_notices_cancel(incident=scoped, actor=privacy_officer, reason="x" * 501)
    with pytest.raises(IncidentError):
        services.incident_notices_cancel(incident=scoped, actor=outsider, reason="誤って登録したため")
    assert set(IncidentNotice.objects.values_list("status", flat=True)) == {"pending"}


def test_the_admin_asks_for_the_reason_before_withdrawing(client, scoped, privacy_officer):
    services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False)
    client.force_login(privacy_officer)
    url = reverse("admin:incidents_incident_changelist")
    chosen = {"action": "cancel_pending_notices", "_selected_action": [scoped.pk]}
    # the action first shows a page asking for the reason, and changes nothing
    page = client.post(url, chosen)
    assert page.status_code == 200 and "取り消す理由" in page.content.decode()
    # an empty reason shows the page again with the form's error, still changing nothing
    again = client.post(url, {**chosen, "apply": "1", "reason": ""})
    assert again.status_code == 200 and "errorlist" in again.content.decode()
    assert set(IncidentNotice.objects.values_list("status", flat=True)) == {"pending"}
    # with a reason the notices are withdrawn
    client.post(url, {**chosen, "apply": "1", "reason": "郵送で通知するため"})
    assert set(IncidentNotice.objects.values_list("status", flat=True)) == {"cancelled"}


# --- exactly once: a sender that died is resolved through the Message-ID (incidents.mail) -----------------


def _file_backend(settings, tmp_path):
    settings.EMAIL_BACKEND = "incidents.mail.FileBasedEmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)


def _messages(tmp_path) -> list[str]:
    """The recipients of every message the file backend wrote (one per message)."""
    out = []
    for path in sorted(tmp_path.iterdir()):
        for line in path.read_text().splitlines():
            if line.startswith("To: "):
                out.append(line[4:])
    return out


def _run_batches(incident) -> None:
    for _ in range(10):
        if not services.incident_notices_send_batch(incident_id=incident.pk, enqueue=False):
            return


def _die_after_claim(incident, customer, *, sent: bool, tmp_path) -> IncidentNotice:
    """As a sender killed after claiming `customer`'s notice: the row "sending" with its Message-ID, the
    e-mail written (sent=True) or not yet."""
    from django.core.mail import EmailMessage, get_connection

    notice = IncidentNotice.objects.get(incident=incident, customer=customer)
    message_id = services.notice_message_id(incident.pk, notice.pk)
    IncidentNotice.objects.filter(pk=notice.pk).update(status="sending", message_id=message_id)
    if sent:
        EmailMessage(
            "s",
            "b",
            "x@example.co.jp",
            [customer.email],
            headers={"Message-ID": message_id},
            connection=get_connection(),
        ).send()
    return notice


@pytest.mark.parametrize("sent", [True, False], ids=["mail-left", "mail-not-left"])
def test_a_notice_left_sending_by_a_dead_sender_is_resolved_without_a_second_letter(
    settings, tmp_path, scoped, privacy_officer, customer, sent
):
    # given the file backend, queued notices, and a sender that died holding the standing customer's notice
    _file_backend(settings, tmp_path)
    services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False)
    notice = _die_after_claim(scoped, customer, sent=sent, tmp_path=tmp_path)
    # when the next sender runs
    _run_batches(scoped)
    # then each person has exactly one message, and every notice is "sent"
    assert sorted(_messages(tmp_path)) == ["hanako@example.com", "taro.yamada@example.com"]
    assert set(IncidentNotice.objects.values_list("status", flat=True)) == {"sent"}
    notice.refresh_from_db()
    assert notice.message_id == services.notice_message_id(scoped.pk, notice.pk)


def test_a_backend_that_cannot_tell_leaves_the_notice_for_a_person(scoped, privacy_officer, customer):
    # given Django's in-memory backend (like SMTP, it cannot say what it sent) and a dead sender's notice
    services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False)
    notice = IncidentNotice.objects.get(incident=scoped, customer=customer)
    IncidentNotice.objects.filter(pk=notice.pk).update(status="sending", message_id="<x@example>")
    # when the next sender runs
    _run_batches(scoped)
    # then that notice is "unknown" for a person to check, never sent again; the other is sent
    notice.refresh_from_db()
    assert notice.status == IncidentNotice.Status.UNKNOWN
    assert [m.to[0] for m in mail.outbox] == ["hanako@example.com"]


def test_each_notice_carries_its_own_message_id(scoped, privacy_officer):
    services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False)
    _run_batches(scoped)
    expected = {
        services.notice_message_id(scoped.pk, pk)
        for pk in IncidentNotice.objects.filter(incident=scoped).values_list("pk", flat=True)
    }
    assert {m.extra_headers["Message-ID"] for m in mail.outbox} == expected
    assert set(IncidentNotice.objects.values_list("message_id", flat=True)) == expected


def test_paused_notices_wait_and_resume(scoped, privacy_officer):
    # given queued notices, paused
    services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False)
    services.incident_notices_pause(incident=scoped, actor=privacy_officer)
    # when a batch runs, then nothing is sent
    assert services.incident_notices_send_batch(incident_id=scoped.pk, enqueue=False) == 0
    assert mail.outbox == []
    # when resumed, then everyone is sent their notice once
    services.incident_notices_resume(incident=scoped, actor=privacy_officer, enqueue=False)
    _run_batches(scoped)
    assert len(mail.outbox) == 2
    assert set(IncidentNotice.objects.values_list("status", flat=True)) == {"sent"}


def test_a_person_without_an_address_is_listed_for_post_or_phone(privacy_officer, team):
    quiet = CustomerFactory(team=team, email="")
    incident = make_incident(privacy_officer)
    scope = services.incident_scope_by_upload(
        incident=incident, actor=privacy_officer, data=f"{quiet.member_no}\n".encode(), enqueue=False
    )
    services.incident_scope_advance(scope_id=scope.pk)
    services.incident_notices_queue(incident=incident, actor=privacy_officer, enqueue=False)
    _run_batches(incident)
    assert mail.outbox == []
    assert IncidentNotice.objects.get(incident=incident).status == IncidentNotice.Status.NO_ADDRESS


def test_a_second_sender_of_the_same_incident_waits_its_turn(scoped, privacy_officer, django_db_blocker):
    # given another session holding the incident's sender lock
    import psycopg

    from tests.services import database_conninfo

    services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False)
    with psycopg.connect(database_conninfo(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", (services.NOTICE_SENDER_LOCK, scoped.pk))
        # when this worker runs a batch, then it is told to wait and sends nothing
        with pytest.raises(services.NoticeSenderBusy):
            services.incident_notices_send_batch(incident_id=scoped.pk, enqueue=False)
    assert mail.outbox == []


def test_pause_and_resume_need_the_change_permission(scoped, outsider):
    with pytest.raises(IncidentError):
        services.incident_notices_pause(incident=scoped, actor=outsider)
    with pytest.raises(IncidentError):
        services.incident_notices_resume(incident=scoped, actor=outsider, enqueue=False)


@pytest.mark.parametrize("left", [True, False], ids=["found-in-the-log", "not-found"])
def test_a_person_resolves_the_unknown_notices(scoped, privacy_officer, customer, left):
    # given a notice left unknown by a dead sender (a backend that could not tell), the other one sent
    services.incident_notices_queue(incident=scoped, actor=privacy_officer, enqueue=False)
    notice = IncidentNotice.objects.get(incident=scoped, customer=customer)
    IncidentNotice.objects.filter(pk=notice.pk).update(status="sending", message_id="<x@example>")
    _run_batches(scoped)
    assert IncidentNotice.objects.get(pk=notice.pk).status == IncidentNotice.Status.UNKNOWN
    # when a person answers from the mail server's log, and the sender runs again
    assert services.incident_notices_resolve_unknown(
        incident=scoped, actor=privacy_officer, left=left, enqueue=False
    )
    _run_batches(scoped)
    # then found: marked sent, never mailed again; not found: mailed once now
    assert IncidentNotice.objects.get(pk=notice.pk).status == IncidentNotice.Status.SENT
    assert sorted(m.to[0] for m in mail.outbox) == (
        ["hanako@example.com"] if left else ["hanako@example.com", "taro.yamada@example.com"]
    )


def test_resolving_unknown_notices_needs_the_change_permission(scoped, outsider):
    with pytest.raises(IncidentError):
        services.incident_notices_resolve_unknown(incident=scoped, actor=outsider, left=True, enqueue=False)
