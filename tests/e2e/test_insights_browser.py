"""The insights in a real headless Chromium: the KPI page draws its charts (vendored Chart.js, no console
error, no CSP violation), and a segment's export downloads as a CSV."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission

from consent.models import Purpose
from consent.provision.models import ProcessorContract, ProvisionRecord, Recipient
from consent.provision.rules import CONTRACT_CLAUSES
from consent.services import purpose_create
from crm.insights.models import CampaignResult, MarketingSpend, Segment
from crm.insights.rules import months_back
from tests.e2e.conftest import TRANSACTIONAL_DB, log_in
from tests.factories import CustomerFactory

pytestmark = [pytest.mark.e2e, TRANSACTIONAL_DB]
ALL_CLAUSES = {name: True for name in CONTRACT_CLAUSES}


def _console_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def test_kpi_page_draws_every_chart_without_console_errors(live_server, new_page, privacy_officer, team):
    # given a few months of spend, campaign results and customers
    months = months_back(dt.date.today(), 3)
    for month in months:
        MarketingSpend.objects.create(channel="web_form", month=month, amount=Decimal(50000))
        CampaignResult.objects.create(
            campaign_code=f"news-{month:%Y%m}", sent_on=month, sent=100, delivered=95, opened=30, clicked=6
        )
    CustomerFactory(team=team)
    page = new_page()
    errors = _console_errors(page)
    # when the privacy officer opens the KPI page
    log_in(page, live_server.url, "privacy")
    page.goto(f"{live_server.url}/admin/crm/marketingspend/kpi/")
    # then every chart is drawn by Chart.js (a canvas with datasets), consent's opt-in block included
    canvases = page.locator("canvas")
    assert canvases.count() >= 5
    page.wait_for_function("document.querySelectorAll('canvas:not([data-drawn])').length === 0")
    assert page.locator("#kpi-extra-consent_opt_in").count() == 1
    assert page.locator("#kpi-extra-request_on_time").count() == 1  # the request desk's on-time rate
    assert page.evaluate("typeof window.Chart") == "function"
    assert page.locator("canvas[data-series]").first.get_attribute("data-drawn") == "2"
    # and nothing went wrong in the console
    assert errors == []


def _tokyo_segment(team: Any) -> Segment:
    """A segment of one Tokyo customer (and an Osaka one outside it), for customer management."""
    CustomerFactory(team=team, prefecture="13")
    CustomerFactory(team=team, prefecture="27")
    if not Purpose.objects.filter(code="customer_management").exists():  # flushed by a transactional test
        purpose_create(
            code="customer_management",
            category="customer_management",
            legal_basis="contract",
            title_ja="顧客管理",
            title_en="Customer management",
            description_ja="会員情報の管理のため。",
            description_en="To manage membership.",
        )
    return Segment.objects.create(name="東京の顧客", filters={"prefectures": ["13"]})


def _export_as_teammate(live_server: Any, new_page: Any, segment: Segment, recipient: str = "") -> Any:
    """Log in as the teammate, export the segment's personal data for customer management (to `recipient`
    when given) and return (the download, the console errors)."""
    page = new_page()
    errors = _console_errors(page)
    log_in(page, live_server.url, "teammate")
    page.goto(f"{live_server.url}/admin/crm/segment/{segment.pk}/export/")
    page.select_option("#id_kind", "personal")
    page.select_option("#id_purpose_code", "customer_management")
    if recipient:
        page.select_option("#id_recipient", recipient)
    with page.expect_download() as info:
        page.click("#segment-export-form [type=submit]")
    return info.value, errors


def test_segment_export_downloads_a_csv(live_server, new_page, teammate, team):
    # given a segment of Tokyo customers and a staff member of their team
    segment = _tokyo_segment(team)
    # when they open the segment's export page, choose personal data for customer management and submit
    download, errors = _export_as_teammate(live_server, new_page, segment)
    # then a CSV downloads with a header and the one Tokyo customer, masked (no 'view personal data')
    text = open(download.path(), encoding="utf-8-sig").read()
    lines = text.strip().splitlines()
    assert download.suggested_filename.startswith(f"segment-{segment.pk}-customer_management")
    assert lines[0].startswith("id,")
    assert len(lines) == 2
    assert "***@example.com" in lines[1]
    assert errors == []


def test_segment_export_to_a_processor_downloads_after_the_provision_record(
    live_server, new_page, teammate, team
):
    # given the segment, a domestic processor with a contract in force, and a teammate allowed to provide
    # (which takes seeing personal data in clear: the file holds what the provision record says)
    segment = _tokyo_segment(team)
    processor = Recipient.objects.create(
        name="配送センター株式会社", kind=Recipient.Kind.PROCESSOR, country="JP"
    )
    ProcessorContract.objects.create(
        recipient=processor, signed_on=dt.date(2025, 4, 1), document_ref="CT-E2E", **ALL_CLAUSES
    )
    teammate.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="consent", codename__in=["add_provisionrecord", "view_recipient"]
        ),
        Permission.objects.get(content_type__app_label="crm", codename="view_customer_pii"),
    )
    # when they export personal data for customer management to the processor (basis left to its kind)
    download, errors = _export_as_teammate(live_server, new_page, segment, recipient=str(processor.pk))
    lines = open(download.path(), encoding="utf-8-sig").read().strip().splitlines()
    # then the CSV holds the one Tokyo customer, and the provision record (entrustment) names them
    assert len(lines) == 2
    record = ProvisionRecord.objects.get(recipient=processor)
    assert record.basis == "entrustment"
    assert [str(pk) for pk in record.customers.values_list("pk", flat=True)] == [lines[1].split(",")[0]]
    assert errors == []
