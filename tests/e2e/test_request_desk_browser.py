"""The request desk in a real headless Chromium, end to end in one flow: a request from the public form,
confirmed through the link of the e-mail (read from the live server's locmem outbox), assigned by a support
lead, identity verified by the handler, the matching customer linked, the disclosure package ordered and
downloaded (the steps of tests/e2e/test_disclosure_browser.py), completed with the result e-mailed and the
download in the completion record.

Each step is a function taking the page, so a step can be put between two others.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail

from consent.requests.models import DataSubjectRequest, RequestCompletion, RequestMessage, RequestState
from crm.models import AuditEntry
from crm.permissions import ROLE_SUPPORT, ROLE_SUPPORT_LEAD
from tests.e2e.conftest import TRANSACTIONAL_DB, log_in
from tests.e2e.test_disclosure_browser import build_in_the_web_process, download_package, order_package
from tests.factories import CustomerFactory, UserFactory

pytestmark = [pytest.mark.e2e, TRANSACTIONAL_DB]

ADDRESS = "taro.requester@example.com"
QUEUE = "/admin/consent/datasubjectrequest/"


def submit_public_form(page: Any, base_url: str, kind: str = "disclosure") -> None:
    """The requester, signed in nowhere, asks on /privacy/requests/."""
    page.goto(f"{base_url}/privacy/requests/")
    page.fill("#id_email", ADDRESS)
    page.select_option("#id_kind", kind)
    page.click("form.request-form button[type=submit]")
    assert "メールをご確認ください" in page.inner_text("h1")


def confirm_from_email(page: Any) -> DataSubjectRequest:
    """The requester opens the link of the confirmation e-mail and presses the button."""
    sent = [m for m in mail.outbox if m.to == [ADDRESS]]
    assert len(sent) == 1, [m.subject for m in mail.outbox]
    link = re.search(r"https?://\S+", sent[0].body).group(0)
    page.goto(link)
    page.click("#confirm-request")
    page.wait_for_selector("#request-confirmed")
    request = DataSubjectRequest.objects.get(state=RequestState.RECEIVED)
    assert str(request.pk) in page.inner_text("body")
    return request


def run_action(page: Any, base_url: str, request: DataSubjectRequest, action: str, **fields: str) -> None:
    """Open the request page, click the action's button, fill its form and run it."""
    page.goto(f"{base_url}{QUEUE}{request.pk}/change/")
    page.click(f"a.button[href$='/act/{action}/']")
    for selector, value in fields.items():
        element = page.locator(f"#id_{selector}")
        if element.evaluate("e => e.tagName") == "SELECT":
            element.select_option(value)
        else:
            element.fill(value)
    page.click("#content form input[type=submit]")
    page.wait_for_url(re.compile(rf".*{QUEUE}{request.pk}/change/$"))


def link_the_match(page: Any, base_url: str, request: DataSubjectRequest, customer_id: int) -> None:
    """The handler links the one customer the requester's e-mail address matches (shown on the page)."""
    page.goto(f"{base_url}{QUEUE}{request.pk}/change/")
    assert "申告された識別子に一致する顧客: 1件" in page.inner_text("body")
    page.click(f"ul.dsr-matches a.button[href*='customer_id={customer_id}']")
    page.click("#content form input[type=submit]")
    page.wait_for_url(re.compile(rf".*{QUEUE}{request.pk}/change/$"))
    request.refresh_from_db()
    assert request.customer_id == customer_id


def test_a_public_request_goes_from_the_form_to_the_downloaded_package_and_completion(
    live_server, new_page, team, settings, monkeypatch, tmp_path
):
    # given a handler of the desk, a support lead, and the customer the requester is
    build_in_the_web_process(settings, monkeypatch, tmp_path)
    handler = UserFactory(username="desk", roles=[ROLE_SUPPORT])
    UserFactory(username="desk_lead", roles=[ROLE_SUPPORT_LEAD])
    customer = CustomerFactory(team=team, email=ADDRESS)
    requester = new_page()

    # when a person asks for disclosure on the public form and confirms through the e-mailed link
    submit_public_form(requester, live_server.url)
    request = confirm_from_email(requester)

    # then the request is in the support lead's queue, who gives it to the handler
    lead = new_page()
    log_in(lead, live_server.url, "desk_lead")
    lead.goto(f"{live_server.url}{QUEUE}")
    assert f"#{request.pk}" in lead.inner_text("#result_list")
    run_action(lead, live_server.url, request, "assign", handler=str(handler.pk))

    # and the handler finds it in their queue, records the identity check, and the request is in progress
    desk = new_page()
    log_in(desk, live_server.url, "desk")
    desk.goto(f"{live_server.url}{QUEUE}")
    assert f"#{request.pk}" in desk.inner_text("#result_list")
    run_action(desk, live_server.url, request, "verify", method="id_document", evidence_reference="DOC-42")
    assert "DOC-42" in desk.inner_text("body")
    request.refresh_from_db()
    assert request.state == RequestState.IN_PROGRESS

    # when the handler links the customer the address matches, orders the package and downloads it
    link_the_match(desk, live_server.url, request, customer.pk)
    order_package(desk, live_server.url, request.pk)
    sections = download_package(desk, request.pk)

    # then the ZIP holds the person's data, and the download is in the audit trail
    assert sections["crm.customer"]["rows"][0]["email"] == ADDRESS
    assert AuditEntry.objects.filter(action=AuditEntry.Action.ACCESS, actor=handler).exists()

    # when the handler completes it with an answer
    run_action(desk, live_server.url, request, "complete", note="保有個人データを開示しました。")

    # then it is completed, the completion record is on the page and lists the package handed over, and the
    # result went to the requester
    request.refresh_from_db()
    assert request.state == RequestState.COMPLETED
    assert "対応完了記録" in desk.inner_text("body")
    disclosed = RequestCompletion.objects.get(request=request).summary["disclosed"]
    assert disclosed and "crm.customer" in disclosed[0]["what"]
    result = [m for m in mail.outbox if m.to == [ADDRESS]][-1]
    assert "対応が完了しました" in result.body and "保有個人データを開示しました。" in result.body
    kinds = list(request.messages.values_list("kind", flat=True))
    assert kinds == [RequestMessage.Kind.CONFIRMATION, RequestMessage.Kind.RESULT]
