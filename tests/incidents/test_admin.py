"""The incidents admin (issue #15, step 3): the clocks on the page, the list's order, actions via services."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from incidents import services
from incidents.models import Incident, IncidentFiling
from tests.incidents.conftest import make_incident

pytestmark = pytest.mark.django_db


def _page(client, user, incident) -> str:
    client.force_login(user)
    response = client.get(reverse("admin:incidents_incident_change", args=[incident.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_a_reportable_incident_shows_the_ppc_clocks_with_their_articles(client, security_user):
    # given an incident with a suspected unlawful purpose (規則7条3号), aware 2026-04-01 10:00 JST
    incident = make_incident(security_user, unlawful_purpose=True)
    # when its page is opened
    html = _page(client, security_user, incident)
    # then the 速報 and the 60-day 確報 are shown with their due times, overdue, and the trigger is named;
    # GDPR's clock is not (GDPR does not apply)
    assert "速報（規則8条1項）目安3日" in html
    assert "2026-04-04 10:00:00 JST" in html
    assert "速報（規則8条1項）期限5日" in html
    assert "確報（規則8条2項）60日" in html
    assert "2026-05-31 23:59:59 JST" in html
    assert "不正の目的によるおそれ（規則7条3号）" in html
    assert html.count('class="incident-clock overdue"') == 3
    assert "GDPR第33条1項 72時間" not in html


def test_an_unreportable_incident_shows_no_ppc_clock_and_names_the_exemption(client, security_user):
    # given a triggered incident whose data was strongly encrypted
    incident = make_incident(
        security_user, special_care=True, encrypted=True, gdpr_applies=True, gdpr_late_reason="調査中"
    )
    html = _page(client, security_user, incident)
    # then no PPC clock, the exemption is named, and GDPR's 72 hours are shown
    assert "速報（規則8条1項）" not in html
    assert "高度な暗号化等の措置（規則7条柱書）" in html
    assert "GDPR第33条1項 72時間" in html
    assert "2026-04-04 10:00:00 JST" in html


def test_a_clock_in_time_is_not_red_and_shows_the_time_left(client, security_user):
    aware = timezone.now() - dt.timedelta(hours=1)
    incident = make_incident(security_user, gdpr_applies=True, discovered_at=aware, aware_at=aware)
    html = _page(client, security_user, incident)
    assert html.count('class="incident-clock"') == 1
    assert "overdue" not in html.split('class="incident-clocks"')[1].split("</table>")[0]
    assert "残り 2日 22時間" in html or "残り 2日 23時間" in html


def test_a_filing_stops_its_clock_on_the_page(client, security_user):
    incident = make_incident(security_user, financial_damage=True)
    services.incident_file(incident=incident, kind=IncidentFiling.Kind.PPC_PRELIMINARY, actor=security_user)
    html = _page(client, security_user, incident)
    assert html.count("提出済み") == 2  # the target and the limit of the 速報, both stopped by it


def test_the_list_is_sorted_by_the_nearest_open_deadline(client, security_user):
    # given a GDPR incident due soon, a reportable one due later and one with no clock at all
    now = timezone.now()
    none = make_incident(security_user, title="対象外")
    later = make_incident(security_user, title="後", special_care=True, discovered_at=now, aware_at=now)
    soon = make_incident(
        security_user,
        title="先",
        gdpr_applies=True,
        discovered_at=now - dt.timedelta(hours=70),
        aware_at=now - dt.timedelta(hours=70),
    )
    client.force_login(security_user)
    # when the list is opened
    response = client.get(reverse("admin:incidents_incident_changelist"))
    # then the nearest deadline comes first and the incident without one last
    assert [obj.pk for obj in response.context["cl"].result_list] == [soon.pk, later.pk, none.pk]


def test_the_transition_action_calls_the_service_and_refuses_a_skipped_step(client, security_user, incident):
    client.force_login(security_user)
    url = reverse("admin:incidents_incident_changelist")
    # when "close" is asked of a detected incident, then "contained"
    client.post(url, {"action": "transition_closed", "_selected_action": [incident.pk]})
    assert Incident.objects.get(pk=incident.pk).status == Incident.Status.DETECTED
    client.post(url, {"action": "transition_contained", "_selected_action": [incident.pk]})
    assert Incident.objects.get(pk=incident.pk).status == Incident.Status.CONTAINED


def test_the_form_cannot_set_the_status(client, security_user, incident):
    client.force_login(security_user)
    html = _page(client, security_user, incident)
    assert 'name="status"' not in html


def test_scoping_from_the_page_by_upload_shows_the_counts(client, privacy_officer, customer):
    # given an incident the privacy officer works on
    from django.core.files.uploadedfile import SimpleUploadedFile

    from incidents.models import IncidentScope

    incident = make_incident(privacy_officer)
    client.force_login(privacy_officer)
    url = reverse("admin:incidents_incident_scope", args=[incident.pk])
    # when they upload a list of two lines (one known member number, one unknown e-mail)
    upload = SimpleUploadedFile("list.txt", b"M000000001\nnobody@example.com\n", content_type="text/plain")
    response = client.post(url, {"by_upload": "1", "file": upload})
    assert response.status_code == 302
    # and the worker runs the scope
    scope = IncidentScope.objects.get(incident=incident)
    services.incident_scope_advance(scope_id=scope.pk)
    # then the incident's page shows the scope done with one matched and one unmatched line
    html = _page(client, privacy_officer, incident)
    assert "100%" in html
    row = html.split('id="scopes-0"')[1].split("</tr>")[0]
    # status, progress, matched, unmatched, ambiguous, malformed
    cells = [cell.split(">")[-1] for cell in row.split("</p>")[2:8]]
    assert cells == ["完了", "100%", "1", "1", "0", "0"]


def test_the_scope_page_is_refused_to_staff_off_the_response_team(client, outsider, incident):
    client.force_login(outsider)
    response = client.get(reverse("admin:incidents_incident_scope", args=[incident.pk]))
    assert response.status_code == 404


def test_the_ppc_report_lays_out_the_nine_items_in_order_with_the_company_as_reporter(client, security_user):
    # given an incident with every 規則8(1) item written
    names = [
        "report_summary",
        "report_items",
        "report_persons",
        "report_cause",
        "report_secondary_damage",
        "report_response_to_persons",
        "report_publication",
        "report_prevention",
        "report_other",
    ]
    incident = make_incident(security_user, **{name: f"本文{i}" for i, name in enumerate(names, 1)})
    client.force_login(security_user)
    # when the printable 速報 is opened
    response = client.get(reverse("admin:incidents_incident_report", args=[incident.pk, "ppc_prelim"]))
    html = response.content.decode()
    # then the items come in the rule's order, each with its label, and the reporter is the company
    assert response.status_code == 200
    positions = [html.index(f"本文{i}<") for i in range(1, 10)]
    assert positions == sorted(positions)
    for label in ("概要", "原因", "再発防止のための措置", "その他参考となる事項"):
        assert label in html
    assert "規則第8条第1項" in html
    assert settings.CRM_COMPANY["name"] in html


def test_the_gdpr_report_has_the_four_items_of_article_33_3(client, security_user):
    incident = make_incident(security_user, gdpr_applies=True, gdpr_late_reason="調査中", affected_count=12)
    client.force_login(security_user)
    html = client.get(reverse("admin:incidents_incident_report", args=[incident.pk, "gdpr"])).content.decode()
    for number in ("(a)", "(b)", "(c)", "(d)"):
        assert number in html
    assert "本人の概数: 12" in html
    assert "調査中" in html  # late: the reasons for the delay are part of the notification


def test_the_report_is_refused_to_staff_off_the_response_team(client, outsider, incident):
    client.force_login(outsider)
    response = client.get(reverse("admin:incidents_incident_report", args=[incident.pk, "ppc_prelim"]))
    assert response.status_code == 404


def test_an_incident_recorded_from_the_admin_goes_through_the_service(client, security_user):
    # given the security role on the add page
    client.force_login(security_user)
    url = reverse("admin:incidents_incident_add")
    data = {
        "title": "USBメモリの紛失",
        "kind": "loss_theft",
        "discovered_at_0": "2026-04-01",
        "discovered_at_1": "09:00:00",
        "aware_at_0": "2026-04-01",
        "aware_at_1": "10:00:00",
        "systems": ["crm.Customer"],
        "data_classes": ["direct"],
        "special_care": "on",
        "affected_count": "3",
        "gdpr_late_reason": "",
        **{
            f"{prefix}-{k}": v
            for prefix in ("filings", "scopes", "notices", "actions", "timeline")
            for k, v in (("TOTAL_FORMS", "0"), ("INITIAL_FORMS", "0"))
        },
    }
    # when the form is sent
    response = client.post(url, data)
    # then the incident exists, detected, with its "created" timeline entry by the user and its deadline key
    assert response.status_code == 302, response.content.decode()[:2000]
    incident = Incident.objects.get(title="USBメモリの紛失")
    assert incident.status == Incident.Status.DETECTED
    assert list(incident.timeline.values_list("kind", "actor")) == [("created", security_user.pk)]
    assert incident.next_deadline_at == incident.clocks().appi_prelim_target


def test_facts_changed_from_the_admin_go_through_the_service(client, security_user, incident):
    # given the incident's page, as the browser would send it back with a new title
    client.force_login(security_user)
    url = reverse("admin:incidents_incident_change", args=[incident.pk])
    page = client.get(url)
    form = page.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif isinstance(value, list):
            data[name] = value
        elif hasattr(value, "astimezone"):
            local = timezone.localtime(value)
            data[f"{name}_0"], data[f"{name}_1"] = local.date().isoformat(), local.time().isoformat()
        elif value is not None:
            data[name] = value
    for formset in page.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        for key in ("TOTAL_FORMS", "INITIAL_FORMS", "MIN_NUM_FORMS", "MAX_NUM_FORMS"):
            data[f"{management.prefix}-{key}"] = management.initial.get(key, 0)
    data["title"] = "誤送信（訂正）"
    # when it is sent
    response = client.post(url, data)
    # then the title changed, the status did not, and nothing was added to the timeline but through services
    assert response.status_code == 302, response.content.decode()[:3000]
    incident.refresh_from_db()
    assert (incident.title, incident.status) == ("誤送信（訂正）", Incident.Status.DETECTED)


def test_the_page_shows_the_notices_progress_and_lists_those_to_follow_up(client, privacy_officer, team):
    from incidents.models import IncidentNotice
    from tests.factories import CustomerFactory

    # given an incident with two notices sent, one without an address, one pending
    people = [CustomerFactory(team=team) for _ in range(4)]
    incident = make_incident(privacy_officer)
    scope = services.incident_scope_by_upload(
        incident=incident,
        actor=privacy_officer,
        data="\n".join(c.member_no for c in people).encode(),
        enqueue=False,
    )
    services.incident_scope_advance(scope_id=scope.pk)
    services.incident_notices_queue(incident=incident, actor=privacy_officer, enqueue=False)
    rows = list(IncidentNotice.objects.filter(incident=incident).order_by("pk"))
    IncidentNotice.objects.filter(pk__in=[rows[0].pk, rows[1].pk]).update(status="sent")
    IncidentNotice.objects.filter(pk=rows[2].pk).update(status="no_address")
    # when its page is opened
    html = _page(client, privacy_officer, incident)
    # then the progress counts each state, and only the one without an address is listed
    assert '<progress class="incident-notice-progress" max="4" value="3">' in html
    assert "送信済み: 2" in html and "送信待ち: 1" in html
    assert "要対応の通知" in html
    assert html.count("連絡先なし（郵送・電話または公表）") >= 2  # the count and the listed row


def test_pause_and_resume_from_the_admin(client, privacy_officer, incident):
    client.force_login(privacy_officer)
    url = reverse("admin:incidents_incident_changelist")
    client.post(url, {"action": "pause_notices", "_selected_action": [incident.pk]})
    incident.refresh_from_db()
    assert incident.notices_paused
    client.post(url, {"action": "resume_notices", "_selected_action": [incident.pk]})
    incident.refresh_from_db()
    assert not incident.notices_paused
