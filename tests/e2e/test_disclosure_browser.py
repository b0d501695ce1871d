"""The disclosure package in a real headless Chromium: the handler orders it on a verified request's page,
sees it built with its progress, and downloads the ZIP through the link on the package's page (no CSP
violation anywhere)."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from celery import current_app

from consent.requests.models import DataSubjectRequest, RequestState
from crm.models import AuditEntry
from crm.permissions import ROLE_SUPPORT
from tests.e2e.conftest import TRANSACTIONAL_DB, log_in
from tests.factories import CustomerFactory, UserFactory

pytestmark = [pytest.mark.e2e, TRANSACTIONAL_DB]

WHEN = dt.datetime(2026, 4, 1, 1, 0, tzinfo=dt.UTC)


def build_in_the_web_process(settings: Any, monkeypatch: Any, tmp_path: Path) -> None:
    """The package's build runs in the web process (eager tasks, so that no worker is needed here), its
    files in the test's own directory. Eager on the Celery app itself, never through Django's settings: the
    app reads those once, so an override there either comes too late or outlives the test."""
    monkeypatch.setitem(current_app.conf, "task_always_eager", True)
    settings.DISCLOSURE_PACKAGE_DIR = str(tmp_path / "packages")


def order_package(page: Any, base_url: str, request_id: int) -> None:
    """The handler orders the package on the request's page and confirms; the page then lists it, built."""
    page.goto(f"{base_url}/admin/consent/datasubjectrequest/{request_id}/change/")
    page.get_by_role("link", name="開示データを作成する").click()
    page.locator("form [type=submit]").last.click()
    page.wait_for_url(re.compile(rf".*/datasubjectrequest/{request_id}/change/$"))
    assert page.locator("progress").first.get_attribute("value") == "100"


def download_package(page: Any, request_id: int) -> dict[str, Any]:
    """From the request's page, the handler opens the package and follows its download link; returns the
    sections of the ZIP's machine-readable file by key (the page and the CSVs checked to be there)."""
    page.get_by_role("link", name=re.compile(r"開示データ #\d+")).click()
    with page.expect_download() as download:
        page.get_by_role("link", name="ZIPをダウンロード").click()
    saved = Path(download.value.path())
    zf = zipfile.ZipFile(io.BytesIO(saved.read_bytes()))
    assert "disclosure.html" in zf.namelist() and "csv/crm.customer.csv" in zf.namelist()
    assert download.value.suggested_filename == f"disclosure-REQ-{request_id}.zip"
    data = json.loads(zf.read("disclosure.json"))
    return {s["key"]: s for s in data["sections"]}


def test_the_handler_orders_and_downloads_the_disclosure_package(
    live_server, new_page, team, settings, monkeypatch, tmp_path
):
    # given a verified disclosure request about a customer, assigned to a handler of the desk
    build_in_the_web_process(settings, monkeypatch, tmp_path)
    handler = UserFactory(username="desk-handler", roles=[ROLE_SUPPORT])
    customer = CustomerFactory(team=team, email="browser.package@example.com")
    dsr = DataSubjectRequest.objects.create(
        kind="disclosure", channel="email", received_at=WHEN, customer=customer, handler=handler
    )
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(
        identity_verified_at=WHEN, state=RequestState.IN_PROGRESS
    )
    page: Any = new_page()
    log_in(page, live_server.url, "desk-handler")
    # when they order the package on the request's page and confirm, then it is listed, built (100 %)
    order_package(page, live_server.url, dsr.pk)
    # when they open it and follow its download link, then they hold the ZIP: the machine-readable file
    # with the customer's e-mail address, the page and the CSVs
    sections = download_package(page, dsr.pk)
    assert sections["crm.customer"]["rows"][0]["email"] == "browser.package@example.com"
    # and the download is in the audit trail
    assert AuditEntry.objects.filter(action=AuditEntry.Action.ACCESS, actor=handler).exists()
