"""The request desk (開示等請求): states, identity verification, the gate, four-eyes erasure, clocks, e-mails
and the completion record."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import PermissionDenied
from django_fsm import TransitionNotAllowed

from consent import selectors as consent_selectors
from consent.requests import services
from consent.requests.models import (
    DataSubjectRequest,
    IdentityVerification,
    RequestCompletion,
    RequestMessage,
    RequestState,
)
from crm.models import AuditEntry, Customer, LegalHold
from crm.permissions import ROLE_SUPPORT, ROLE_SUPPORT_LEAD
from tests.consent.conftest import at, phone_request
from tests.factories import UserFactory


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run what a service leaves for after the commit (its e-mails) when the block ends, as a commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def lead(db):
    return UserFactory(username="desk-lead", roles=[ROLE_SUPPORT_LEAD])


@pytest.fixture
def colleague(db):
    return UserFactory(username="desk-colleague", roles=[ROLE_SUPPORT])


def _request(handler, kind="disclosure", jurisdiction="appi", received="2026-04-01 10:00", **kwargs):
    return phone_request(handler, kind=kind, jurisdiction=jurisdiction, received_at=at(received), **kwargs)


def _verified(handler, **kwargs):
    request = _request(handler, **kwargs)
    services.request_verify_identity(
        request=request, actor=handler, method="id_document", evidence_reference="R-1"
    )
    request.refresh_from_db()
    return request


# --- the state machine --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_state_cannot_be_assigned_nor_moved_illegally(handler):
    # given a request just received
    request = _request(handler)
    assert request.state == RequestState.RECEIVED
    # when code assigns a state or calls a transition the machine does not have from here
    # then the model refuses: the state is protected, and completion needs verification and "in progress"
    with pytest.raises(AttributeError):
        request.state = RequestState.COMPLETED
    with pytest.raises(TransitionNotAllowed):
        request.complete()
    with pytest.raises(TransitionNotAllowed):
        request.confirm()
    # and the services answer with the desk's own error, nothing changed
    with pytest.raises(services.RequestError):
        services.request_complete(request=request, actor=handler)
    request.refresh_from_db()
    assert request.state == RequestState.RECEIVED


@pytest.mark.django_db
def test_a_rejection_needs_a_ground_and_an_explanation(handler, committed):
    request = _request(handler)
    with pytest.raises(services.RequestError):
        services.request_reject(request=request, actor=handler, ground="gdpr_12_5", explanation="  ")
    # given a ground and the explanation (APPI Art. 36), the request is rejected and the requester told why
    with committed():
        services.request_reject(
            request=request, actor=handler, ground="gdpr_12_5", explanation="同一内容の請求の反復"
        )
    request.refresh_from_db()
    assert request.state == RequestState.REJECTED
    assert [m.kind for m in request.messages.all()] == [RequestMessage.Kind.REJECTION]
    assert "同一内容の請求の反復" in mail.outbox[-1].body
    assert RequestCompletion.objects.get(request=request).outcome == RequestState.REJECTED


@pytest.mark.django_db
def test_every_transition_is_in_the_audit_trail(handler):
    request = _request(handler)
    services.request_start_verification(request=request, actor=handler)
    services.request_verify_identity(request=request, actor=handler, method="id_document")
    entries = AuditEntry.objects.filter(
        content_type__model="datasubjectrequest", object_pk=str(request.pk)
    ).order_by("pk")
    states = [e.changes.get("state", [None, None])[1] for e in entries if e.changes and "state" in e.changes]
    assert states == [RequestState.RECEIVED, RequestState.IDENTITY, RequestState.IN_PROGRESS]
    assert all(e.actor_id == handler.pk for e in entries)


# --- identity verification gates fulfilment ---------------------------------------------------------------


@pytest.mark.django_db
def test_no_fulfilment_before_the_identity_is_verified(handler, customer):
    # given a correction request linked to a customer, identity not yet verified
    request = _request(handler, kind="correction")
    services.request_link_customer(request=request, customer=customer, actor=handler)
    # when the handler tries to correct, stop use or complete, then each is refused and nothing changes
    with pytest.raises(services.RequestError):
        services.request_correct(request=request, actor=handler, changes={"given_name": "次郎"})
    with pytest.raises(services.RequestError):
        services.request_complete(request=request, actor=handler)
    customer.refresh_from_db()
    assert customer.given_name == "太郎"
    # when the verification is recorded (method, evidence, who, when), the correction goes through crm
    services.request_verify_identity(
        request=request, actor=handler, method="id_document", evidence_reference="R-7"
    )
    step = IdentityVerification.objects.get(request=request, completes=True)
    assert (step.method, step.evidence_reference, step.verified_by) == ("id_document", "R-7", handler)
    services.request_correct(request=request, actor=handler, changes={"given_name": "次郎"})
    customer.refresh_from_db()
    assert customer.given_name == "次郎"
    request.refresh_from_db()
    services.request_complete(request=request, actor=handler, note="訂正しました。")
    record = RequestCompletion.objects.get(request=request)
    assert record.summary["changed"] == ["given_name"]
    assert "次郎" not in str(record.summary) and "太郎" not in str(record.summary)


@pytest.mark.django_db
def test_email_control_alone_does_not_verify_identity(handler):
    request = _request(handler)
    with pytest.raises(services.RequestError):
        services.request_verify_identity(request=request, actor=handler, method="email_control")


# --- who sees a request -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_only_the_handler_support_leads_and_the_privacy_officer_see_a_request(
    handler, colleague, lead, privacy_officer, teammate, client
):
    request = _request(handler)
    for user, sees in (
        (handler, True),
        (lead, True),
        (privacy_officer, True),
        (colleague, False),
        (teammate, False),
    ):
        visible = DataSubjectRequest.objects.restrict(user, "view")
        assert visible.filter(pk=request.pk).exists() is sees, user
        assert visible.count() == (1 if sees else 0)
    # and the colleague's queue page lists nothing, counts nothing, and the request page is "not found"
    client.force_login(colleague)
    listing = client.get("/admin/consent/datasubjectrequest/?state=all")
    assert listing.status_code == 200
    assert list(listing.context["cl"].result_list) == []
    assert (
        list(client.get(f"/admin/consent/datasubjectrequest/?q={request.pk}").context["cl"].result_list) == []
    )
    page = client.get(f"/admin/consent/datasubjectrequest/{request.pk}/change/")
    assert page.status_code == 302
    act = client.post(f"/admin/consent/datasubjectrequest/{request.pk}/act/start_verification/")
    assert act.status_code == 302
    request.refresh_from_db()
    assert request.state == RequestState.RECEIVED
    with pytest.raises(PermissionDenied):
        services.request_start_verification(request=request, actor=colleague)


@pytest.mark.django_db
def test_opening_a_request_is_recorded(handler, client):
    request = _request(handler)
    client.force_login(handler)
    assert client.get(f"/admin/consent/datasubjectrequest/{request.pk}/change/").status_code == 200
    assert AuditEntry.objects.filter(
        content_type__model="datasubjectrequest", object_pk=str(request.pk), action=AuditEntry.Action.ACCESS
    ).exists()


# --- the queue ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_queue_sorts_by_the_nearest_deadline_and_flags_overdue_and_soon(lead, handler, client):
    with time_machine.travel(at("2026-04-20 12:00"), tick=False):
        late = _request(handler, received="2026-04-01 10:00")  # APPI due 04-15: overdue
        soon = _request(handler, received="2026-04-08 10:00")  # due 04-22: within 3 days
        later = _request(handler, received="2026-04-19 10:00")  # due 05-03
        gdpr = _request(handler, received="2026-04-10 10:00", jurisdiction="gdpr")  # due 05-10
        done = _request(handler, received="2026-03-01 10:00")
        services.request_reject(request=done, actor=handler, ground="gdpr_12_5", explanation="説明")
        client.force_login(lead)
        page = client.get("/admin/consent/datasubjectrequest/")
        assert [r.pk for r in page.context["cl"].result_list] == [late.pk, soon.pk, later.pk, gdpr.pk]
        html = page.content.decode()
        assert "dsr-due-overdue" in html and "dsr-due-soon" in html
        overdue = client.get("/admin/consent/datasubjectrequest/?due=overdue")
        assert [r.pk for r in overdue.context["cl"].result_list] == [late.pk]
        within = client.get("/admin/consent/datasubjectrequest/?due=soon")
        assert [r.pk for r in within.context["cl"].result_list] == [soon.pk]
        by_kind = client.get("/admin/consent/datasubjectrequest/?kind=correction")
        assert list(by_kind.context["cl"].result_list) == []
        by_handler = client.get(f"/admin/consent/datasubjectrequest/?handler={handler.pk}&state=rejected")
        assert [r.pk for r in by_handler.context["cl"].result_list] == [done.pk]


@pytest.mark.django_db
def test_the_request_page_shows_each_date_with_its_article(handler, client):
    request = _request(handler, received="2026-01-31 10:00", jurisdiction="both")
    client.force_login(handler)
    html = client.get(f"/admin/consent/datasubjectrequest/{request.pk}/change/").content.decode()
    assert "2026-02-14" in html and "法第33条" in html  # APPI: 14 days from the day after receipt
    assert "2026-02-28" in html and "GDPR第12条3項" in html  # GDPR: one month, Jan 31 → Feb 28


# --- clocks: extension -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_extension_needs_a_reason_and_a_notice_before_the_original_due_date(handler, committed):
    request = _request(handler, received="2026-01-31 10:00", jurisdiction="gdpr")
    assert request.due_on == dt.date(2026, 2, 28)
    with pytest.raises(services.RequestError):
        services.request_extend(request=request, reason=" ", actor=handler)
    # after the original due date (in JST), no extension
    with time_machine.travel(at("2026-03-01 00:30"), tick=False), pytest.raises(services.RequestError):
        services.request_extend(request=request, reason="複数のシステムの調査が必要", actor=handler)
    # on the due date itself, with a reason: the notice is sent and recorded, and the GDPR date moves
    with time_machine.travel(at("2026-02-28 23:00"), tick=False), committed():
        services.request_extend(request=request, reason="複数のシステムの調査が必要", actor=handler)
    request.refresh_from_db()
    assert request.due_on == dt.date(2026, 4, 30)
    assert [m.kind for m in request.messages.all()] == [RequestMessage.Kind.EXTENSION]
    assert "2026年4月30日" in mail.outbox[-1].body and "複数のシステムの調査が必要" in mail.outbox[-1].body


@pytest.mark.django_db
def test_messages_go_out_in_the_requesters_language(handler, committed):
    request = _request(handler, language="en")
    with committed():
        services.request_reject(
            request=request, actor=handler, ground="appi_33_2_2", explanation="Business hindrance"
        )
    message = mail.outbox[-1]
    assert message.to == ["taro.yamada@example.com"]
    assert "We cannot fulfil your request" in message.body
    assert "APPI Art. 33(2)(ii)" in message.body or "33(2)" in message.body
    recorded = RequestMessage.objects.get(request=request)
    assert recorded.language == "en" and "taro" not in recorded.recipient_hash


# --- fulfilment: stop-use, erasure ------------------------------------------------------------------------


@pytest.mark.django_db
def test_stop_use_takes_effect_at_once_for_every_selection(handler, customer, grant):
    grant(customer, code="marketing_email")
    everyone = Customer.objects.all()
    assert consent_selectors.consented_to(everyone, "marketing_email").filter(pk=customer.pk).exists()
    request = _verified(handler, kind="stop_use_erasure")
    services.request_link_customer(request=request, customer=customer, actor=handler)
    services.request_stop_use(request=request, actor=handler)
    assert not consent_selectors.consented_to(everyone, "marketing_email").filter(pk=customer.pk).exists()
    assert not consent_selectors.usable_for(everyone, "marketing_email").filter(pk=customer.pk).exists()


def _erasure_request(handler, customer):
    request = _verified(handler, kind="stop_use_erasure")
    services.request_link_customer(request=request, customer=customer, actor=handler)
    services.request_ask_erasure_approval(request=request, action="erase", actor=handler)
    return request


@pytest.mark.django_db
def test_erasure_needs_a_second_person_who_is_not_the_handler(handler, colleague, lead, customer, committed):
    request = _erasure_request(handler, customer)
    # the handler cannot approve their own erasure, nor can a colleague without the lead's permission
    for who in (handler, colleague):
        with pytest.raises(PermissionDenied):
            services.request_approve_erasure(request=request, approver=who)
    request.refresh_from_db()
    assert request.state == RequestState.AWAITING_APPROVAL
    with pytest.raises(services.RequestError):
        services.request_erase(request=request, actor=handler)  # not "in progress": waiting for approval
    assert Customer.objects.filter(pk=customer.pk).exists()
    # a support lead approves; then the handler runs the erasure through the one erasure path
    services.request_approve_erasure(request=request, approver=lead)
    services.request_erase(request=request, actor=handler)
    assert not Customer.objects.filter(pk=customer.pk).exists()
    with committed():
        services.request_complete(request=request, actor=handler, note="消去しました。")
    request.refresh_from_db()
    # the completion record stays readable, names the person by keyed hash only; the request forgot them
    record = RequestCompletion.objects.get(request=request)
    assert record.summary["erased"][0]["action"] == "erased"
    assert record.summary["kept"][0]["what"] == "purchases"
    assert len(record.subject_hash) == 64
    assert request.customer_id == customer.pk and request.requester_email == ""  # a number naming nobody
    assert "taro" not in str(record.summary).lower()
    assert [m.kind for m in request.messages.all()] == [RequestMessage.Kind.RESULT]
    assert "法人税法" in mail.outbox[-1].body  # what was kept, and why, is in the answer


@pytest.mark.django_db
def test_a_legal_hold_keeps_the_customer_and_is_named_in_the_record(
    handler, lead, customer, privacy_officer, committed
):
    LegalHold.objects.create(customer=customer, reason=LegalHold.Reason.LITIGATION, placed_by=privacy_officer)
    request = _erasure_request(handler, customer)
    services.request_approve_erasure(request=request, approver=lead)
    services.request_erase(request=request, actor=handler)
    assert Customer.objects.filter(pk=customer.pk).exists()
    with committed():
        services.request_complete(request=request, actor=handler)
    record = RequestCompletion.objects.get(request=request)
    assert record.summary["kept"] == [{"what": "customer", "why": "litigation"}]
    # and the answer to the person names the hold
    assert "訴訟・紛争（GDPR第17条第3項(e)）" in mail.outbox[-1].body


@pytest.mark.django_db
def test_erasure_is_refused_to_a_handler_the_gate_does_not_open_it_to(lead, customer):
    # a handler of the desk without the erase permission (a staff user given the desk's request rights)
    from django.contrib.auth.models import Permission

    weak = UserFactory(username="weak-handler")
    weak.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="consent",
            codename__in=["view_datasubjectrequest", "change_datasubjectrequest", "add_identityverification"],
        )
    )
    weak = type(weak).objects.get(pk=weak.pk)
    request = _verified(weak, kind="stop_use_erasure")
    DataSubjectRequest.objects.filter(pk=request.pk).update(customer=customer)
    with pytest.raises(PermissionDenied):
        services.request_ask_erasure_approval(request=request, action="erase", actor=weak)
    assert Customer.objects.filter(pk=customer.pk).exists()


# --- intake in the admin, matching, linking --------------------------------------------------------------


@pytest.mark.django_db
def test_a_request_taken_by_phone_enters_the_queue_through_the_service(handler, lead, client):
    client.force_login(lead)
    answer = client.post(
        "/admin/consent/datasubjectrequest/add/",
        {
            "kind": "disclosure",
            "jurisdiction": "appi",
            "channel": "phone",
            "received_at_0": "2026-04-01",
            "received_at_1": "10:00:00",
            "language": "ja",
            "disclosure_method": "paper",
            "requester_name": "山田 太郎",
            "requester_email": "taro.yamada@example.com",
            "requester_phone": "",
            "requester_member_no": "",
            "details": "",
            "handler": str(handler.pk),
        },
    )
    assert answer.status_code == 302, answer.content
    request = DataSubjectRequest.objects.get()
    assert (request.state, request.handler, request.appi_due) == (
        RequestState.RECEIVED,
        handler,
        dt.date(2026, 4, 15),
    )
    assert request.work_log[0]["action"] == "received"


@pytest.mark.django_db
def test_the_handler_sees_zero_one_or_several_matches_and_links_one(handler, client, team, customer):
    from tests.factories import CustomerFactory

    client.force_login(handler)
    nobody = _request(handler, email="nobody@example.net")
    page = client.get(f"/admin/consent/datasubjectrequest/{nobody.pk}/change/")
    assert page.context["dsr_matches"] == []
    # one match by e-mail (as the requester typed it, any case), one more by the name only
    CustomerFactory(team=team, family_name="山田", given_name="太郎", email="other@example.org")
    request = _request(handler, email="TARO.YAMADA@example.com", requester_name="山田 太郎")
    matches = client.get(f"/admin/consent/datasubjectrequest/{request.pk}/change/").context["dsr_matches"]
    assert matches[0]["id"] == customer.pk
    assert len(matches) == 2 and "email" in matches[0]["by"]
    # the handler links the right one through the action page
    answer = client.post(
        f"/admin/consent/datasubjectrequest/{request.pk}/act/link/", {"customer_id": str(customer.pk)}
    )
    assert answer.status_code == 302
    request.refresh_from_db()
    assert request.customer_id == customer.pk


@pytest.mark.django_db
def test_a_fee_only_for_purpose_notices_and_disclosure(handler):
    correction = _request(handler, kind="correction")
    with pytest.raises(services.RequestError):
        services.request_record_fee(request=correction, amount=800, actor=handler)
    disclosure = _request(handler)
    services.request_record_fee(request=disclosure, amount=800, actor=handler)
    disclosure.refresh_from_db()
    assert disclosure.fee_amount == 800 and disclosure.fee_charged_at is not None


@pytest.mark.django_db
def test_an_appi_only_request_is_not_extended(handler):
    request = _request(handler, jurisdiction="appi")
    with pytest.raises(services.RequestError):
        services.request_extend(request=request, reason="調査", actor=handler)


@pytest.mark.django_db
def test_erasing_the_customer_by_another_path_clears_the_requester_from_answered_requests(
    handler, customer, support_agent
):
    from crm.retention.services import customer_erase

    answered = _request(handler, kind="disclosure")
    services.request_link_customer(request=answered, customer=customer, actor=handler)
    services.request_reject(request=answered, actor=handler, ground="gdpr_12_5", explanation="説明")
    still_open = _request(handler, kind="correction")
    services.request_link_customer(request=still_open, customer=customer, actor=handler)
    # when a retention run or the desk erases the customer
    customer_erase(customer_ids=[customer.pk], reason="test", actor=support_agent)
    # then the answered request keeps its record but not the requester's address; the open one keeps it
    answered.refresh_from_db()
    still_open.refresh_from_db()
    assert answered.requester_email == ""
    assert RequestCompletion.objects.filter(request=answered).exists()
    assert still_open.requester_email == "taro.yamada@example.com"


@pytest.mark.django_db
def test_a_mail_outage_keeps_the_change_and_logs_no_address(handler, committed, monkeypatch, caplog):
    import smtplib

    def refuse(*args, **kwargs):
        raise smtplib.SMTPRecipientsRefused({"taro.yamada@example.com": (550, b"no")})

    monkeypatch.setattr(services, "send_mail", refuse)
    request = _request(handler)
    with committed():
        services.request_reject(request=request, actor=handler, ground="gdpr_12_5", explanation="説明")
    request.refresh_from_db()
    assert request.state == RequestState.REJECTED
    assert not request.messages.exists()  # the page shows no message sent: the handler can see it
    assert "SMTPRecipientsRefused" in caplog.text and "taro" not in caplog.text


@pytest.mark.django_db
def test_an_objection_to_direct_marketing_is_recorded_and_honoured_at_once(handler, customer, grant):
    from consent.models import Objection

    grant(customer, code="marketing_email")
    request = _verified(handler, kind="objection", jurisdiction="gdpr")
    services.request_link_customer(request=request, customer=customer, actor=handler)
    services.request_record_objection(request=request, actor=handler, scope="direct_marketing")
    objection = Objection.objects.get(customer_id=customer.pk)
    assert objection.source == Objection.Source.REQUEST_DESK
    everyone = Customer.objects.all()
    assert not consent_selectors.usable_for(everyone, "marketing_email").filter(pk=customer.pk).exists()


@pytest.mark.django_db
def test_what_was_disclosed_goes_to_the_completion_record(handler):
    request = _request(handler, kind="disclosure")
    with pytest.raises(services.RequestError):
        services.request_record_disclosed(request=request, actor=handler, what=["crm.Customer"])
    services.request_verify_identity(request=request, actor=handler, method="member_login")
    services.request_record_disclosed(
        request=request, actor=handler, what=["crm.Customer", "consent.ConsentEvent"]
    )
    services.request_complete(request=request, actor=handler)
    disclosed = RequestCompletion.objects.get(request=request).summary["disclosed"]
    assert [d["what"] for d in disclosed] == [["consent.ConsentEvent", "crm.Customer"]]
