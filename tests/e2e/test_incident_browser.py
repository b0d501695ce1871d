"""Breach response in a real headless Chromium (issue #15): open an incident, scope it by an uploaded file,
see the clocks, start the notices, print the report — with no Content-Security-Policy violation."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from incidents.models import Incident, IncidentNotice
from incidents.rules import JST
from tests.e2e.conftest import TRANSACTIONAL_DB, log_in
from tests.factories import CustomerFactory

pytestmark = [pytest.mark.e2e, TRANSACTIONAL_DB]


@pytest.fixture
def tasks_in_process() -> Iterator[None]:
    """The scope and notice tasks run where they are enqueued (after the request's commit), in place of a
    worker: the tasks themselves go through a real worker in tests/incidents/test_worker.py."""
    from config.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


def test_open_scope_by_file_see_the_clocks_notify_and_print(
    live_server, new_page, privacy_officer, customer, team, tasks_in_process, tmp_path
):
    other = CustomerFactory(team=team, email="hanako@example.com")
    page: Any = new_page()
    log_in(page, live_server.url, "privacy")
    aware = (timezone.now() - dt.timedelta(hours=20)).astimezone(JST)

    # when the privacy officer opens an incident (a suspected unlawful purpose: 規則7条3号)
    page.goto(f"{live_server.url}/admin/incidents/incident/add/")
    page.fill("#id_title", "会員サイトへの不正ログイン")
    page.select_option("#id_kind", "unauthorised_access")
    for field in ("discovered_at", "aware_at"):
        page.fill(f"#id_{field}_0", aware.strftime("%Y-%m-%d"))
        page.fill(f"#id_{field}_1", aware.strftime("%H:%M:%S"))
    page.check("#id_unlawful_purpose")
    page.fill("#id_report_summary", "会員サイトへの不正ログイン")
    page.click("input[name=_continue]")
    page.wait_for_url(re.compile(r".*/admin/incidents/incident/\d+/change/$"))
    incident = Incident.objects.get()

    # then its page shows the PPC clocks with their articles and the time left, none overdue
    clocks = page.locator("table.incident-clocks")
    assert "速報（規則8条1項）目安3日" in clocks.inner_text()
    assert "確報（規則8条2項）60日" in clocks.inner_text()
    assert "残り" in clocks.inner_text()
    assert page.locator("tr.incident-clock.overdue").count() == 0

    # when they scope it by an uploaded file: two known people (an e-mail, a member number) and an unknown one
    page.click("text=条件またはファイルで特定する")
    upload = tmp_path / "affected.txt"
    upload.write_text(f"Taro.Yamada@Example.com\n{other.member_no}\nnobody@example.com\n", encoding="utf-8")
    page.set_input_files("#id_file", str(upload))
    page.click("input[name=by_upload]")
    page.wait_for_url(re.compile(rf".*/admin/incidents/incident/{incident.pk}/change/$"))
    # then the page shows the scope done with its counts
    scope_row = page.locator(".field-matched").first
    assert scope_row.inner_text().strip() == "2"
    assert page.locator(".field-unmatched").first.inner_text().strip() == "1"
    assert page.locator(".field-ambiguous").first.inner_text().strip() == "0"

    # when they start the notices from the list's action
    page.goto(f"{live_server.url}/admin/incidents/incident/")
    page.check(f"input[name=_selected_action][value='{incident.pk}']")
    page.select_option("select[name=action]", "queue_notices")
    page.click("button[name=index]")
    assert "通知2件を送信待ちにしました" in page.locator("ul.messagelist").inner_text()
    # then each person got one e-mail, and the incident page shows the progress
    assert sorted(m.to[0] for m in mail.outbox) == ["hanako@example.com", "taro.yamada@example.com"]
    assert set(IncidentNotice.objects.values_list("status", flat=True)) == {"sent"}
    page.goto(f"{live_server.url}/admin/incidents/incident/{incident.pk}/change/")
    assert "送信済み: 2" in page.locator(".field-notice_progress").inner_text()

    # when they open the PPC preliminary report to print it
    with page.expect_popup() as popup:
        page.click("text=個人情報保護委員会への速報")
    report = popup.value
    report.wait_for_load_state()
    # then the nine items of 規則8(1) are there in order, styled by its stylesheet, also when printed
    items = report.locator("tr.report-item th").all_inner_texts()
    assert [i.split(" ", 1)[0] for i in items] == [f"({r})" for r in "i ii iii iv v vi vii viii ix".split()]
    assert report.locator("table").evaluate("e => getComputedStyle(e).borderCollapse") == "collapse"
    report.emulate_media(media="print")
    assert report.locator("body").evaluate("e => getComputedStyle(e).marginTop") == "0px"
