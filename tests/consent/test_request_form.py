"""The public request form (/privacy/requests/): confirmation by e-mail, rate limits, no address oracle."""

from __future__ import annotations

import re

import pytest
import time_machine
from django.core import mail

from consent.requests.models import DataSubjectRequest, IdentityVerification, RequestMessage, RequestState
from tests.consent.conftest import at

FORM = "/privacy/requests/"


def _submit(client, capture, email="taro.yamada@example.com", kind="disclosure", lang="ja", **extra):
    with capture(execute=True):
        return client.post(f"{FORM}?lang={lang}", {"email": email, "kind": kind}, **extra)


def _link(message) -> str:
    return re.search(r"https?://\S+", message.body).group(0)


@pytest.mark.django_db
def test_a_request_enters_the_queue_only_when_the_link_is_followed(
    client, django_capture_on_commit_callbacks, clean_rate_limits
):
    # given the public form, without login
    assert client.get(FORM).status_code == 200
    # when someone submits an address and a kind
    answer = _submit(client, django_capture_on_commit_callbacks)
    # then the page says to check the e-mail, a confirmation link went to the address, and no request is
    # in the queue yet
    assert answer.status_code == 200
    assert "メールをご確認ください" in answer.content.decode()
    assert [m.to for m in mail.outbox] == [["taro.yamada@example.com"]]
    request = DataSubjectRequest.objects.get()
    assert request.state == RequestState.UNCONFIRMED
    assert [m.kind for m in request.messages.all()] == [RequestMessage.Kind.CONFIRMATION]
    link = _link(mail.outbox[0])
    path = link.split("://", 1)[1].split("/", 1)[1]
    # when the link is opened (a GET, as a mail scanner would), nothing is confirmed yet
    assert client.get("/" + path).status_code == 200
    request.refresh_from_db()
    assert request.state == RequestState.UNCONFIRMED
    # when the requester presses the button, the request is received and control of the address recorded
    confirmed = client.post("/" + path)
    assert confirmed.status_code == 200
    request.refresh_from_db()
    assert request.state == RequestState.RECEIVED
    step = IdentityVerification.objects.get(request=request)
    assert (step.method, step.completes, step.verified_by) == ("email_control", False, None)
    # and the link works once only
    assert client.post("/" + path).status_code == 404


@pytest.mark.django_db
def test_an_expired_link_confirms_nothing(client, django_capture_on_commit_callbacks, clean_rate_limits):
    with time_machine.travel(at("2026-04-01 10:00"), tick=False):
        _submit(client, django_capture_on_commit_callbacks)
    path = "/" + _link(mail.outbox[0]).split("://", 1)[1].split("/", 1)[1]
    with time_machine.travel(at("2026-04-03 10:01"), tick=False):
        assert client.post(path).status_code == 404
    assert DataSubjectRequest.objects.get().state == RequestState.UNCONFIRMED


@pytest.mark.django_db
def test_the_page_never_tells_a_known_address_from_an_unknown_one(
    client, customer, django_capture_on_commit_callbacks, clean_rate_limits
):
    # given a customer with a known address, and an address nobody has
    known = _submit(client, django_capture_on_commit_callbacks, email="Taro.Yamada@Example.com")
    unknown = _submit(client, django_capture_on_commit_callbacks, email="nobody@example.net")
    # then both answers are the same page, byte for byte but for the CSRF token
    strip = lambda r: re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", r.content.decode())  # noqa: E731
    assert (known.status_code, strip(known)) == (unknown.status_code, strip(unknown))


@pytest.mark.django_db
def test_submissions_are_limited_per_address_and_per_source(
    client, settings, django_capture_on_commit_callbacks, clean_rate_limits, frozen_window
):
    settings.REQUEST_FORM_RATE_LIMIT_PER_ADDRESS = 2
    settings.REQUEST_FORM_RATE_LIMIT_PER_SOURCE = 4
    # per address: the third submission for one address within the minute is refused
    answers = [_submit(client, django_capture_on_commit_callbacks).status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    # per source: other addresses from the same source, up to the source's budget
    more = [
        _submit(client, django_capture_on_commit_callbacks, email=f"p{i}@example.net").status_code
        for i in range(2)
    ]
    assert more == [200, 429]
    # another source still gets through
    other = _submit(
        client, django_capture_on_commit_callbacks, email="q@example.net", REMOTE_ADDR="192.0.2.9"
    )
    assert other.status_code == 200
    assert DataSubjectRequest.objects.count() == 4
    assert len(mail.outbox) == 4


@pytest.mark.django_db
def test_a_bad_submission_is_refused_without_a_request(client, clean_rate_limits):
    assert client.post(FORM, {"email": "not-an-address", "kind": "disclosure"}).status_code == 400
    assert client.post(FORM, {"email": "a@example.com", "kind": "everything"}).status_code == 400
    assert client.post(FORM, {"email": "a" * 300 + "@example.com", "kind": "disclosure"}).status_code == 400
    assert DataSubjectRequest.objects.count() == 0


@pytest.mark.django_db
def test_the_form_and_the_mail_speak_english_when_asked(
    client, django_capture_on_commit_callbacks, clean_rate_limits
):
    page = client.get(f"{FORM}?lang=en").content.decode()
    assert "Request about your personal data" in page
    _submit(client, django_capture_on_commit_callbacks, lang="en")
    assert "To confirm the request" in mail.outbox[0].body
    assert DataSubjectRequest.objects.get().language == "en"


@pytest.mark.django_db
def test_requests_never_confirmed_are_deleted_once_their_link_expired(
    client, django_capture_on_commit_callbacks, clean_rate_limits
):
    from django_celery_beat.models import PeriodicTask

    from consent.requests import tasks

    # given two form requests of 1 April, the second confirmed an hour later
    with time_machine.travel(at("2026-04-01 10:00"), tick=False):
        _submit(client, django_capture_on_commit_callbacks)
        _submit(client, django_capture_on_commit_callbacks, email="other@example.net")
    path = "/" + _link(mail.outbox[1]).split("://", 1)[1].split("/", 1)[1]
    with time_machine.travel(at("2026-04-01 11:00"), tick=False):
        assert client.post(path).status_code == 200
    # when the hourly task runs before and after the first one's link expired (48 hours)
    with time_machine.travel(at("2026-04-03 09:59"), tick=False):
        assert tasks.unconfirmed_purge() == 0
    with time_machine.travel(at("2026-04-03 10:01"), tick=False):
        assert tasks.unconfirmed_purge() == 1
        assert tasks.unconfirmed_purge() == 0
    # then only the confirmed request is left, and beat has the schedule
    assert list(DataSubjectRequest.objects.values_list("state", flat=True)) == [RequestState.RECEIVED]
    assert PeriodicTask.objects.filter(task="consent.requests.unconfirmed_purge").exists()
