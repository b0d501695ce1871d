"""Corrective actions and drills (issue #15, step 5)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from incidents import services
from incidents.models import Incident, IncidentCorrectiveAction, IncidentNotice
from incidents.rules import JST
from incidents.services import IncidentError
from tests.incidents.conftest import make_incident, to_recovered

pytestmark = pytest.mark.django_db

S = Incident.Status


@pytest.fixture
def action(incident, security_user):
    """A corrective action of the incident, due on 2026-06-30, not done."""
    return services.incident_action_add(
        incident=incident,
        actor=security_user,
        description="送信前の宛先確認を二重化",
        owner=security_user,
        due_on=dt.date(2026, 6, 30),
    )


def test_an_incident_with_an_open_corrective_action_cannot_be_closed(incident, security_user, action):
    # given a recovered incident with a corrective action not yet done
    to_recovered(incident, security_user)
    # when it is closed, then refused
    with pytest.raises(IncidentError, match="是正措置"):
        services.incident_transition(incident=incident, to=S.CLOSED, actor=security_user)
    assert Incident.objects.get(pk=incident.pk).status == S.RECOVERED
    # once the action is done it closes
    services.incident_action_complete(action=action, actor=security_user)
    services.incident_transition(incident=incident, to=S.CLOSED, actor=security_user)
    assert Incident.objects.get(pk=incident.pk).status == S.CLOSED
    with pytest.raises(IncidentError):
        services.incident_action_complete(action=action, actor=security_user)


def test_corrective_actions_from_the_admin(client, incident, security_user):
    client.force_login(security_user)
    url = reverse("admin:incidents_incident_action_add", args=[incident.pk])
    response = client.post(
        url, {"description": "研修の実施", "owner": security_user.pk, "due_on": "2026-06-30"}
    )
    assert response.status_code == 302
    action = IncidentCorrectiveAction.objects.get(incident=incident)
    complete = reverse("admin:incidents_incident_action_complete", args=[incident.pk, action.pk])
    assert client.post(complete).status_code == 302
    action.refresh_from_db()
    assert action.completed_at is not None


def test_staff_off_the_team_cannot_add_a_corrective_action(client, incident, outsider):
    client.force_login(outsider)
    url = reverse("admin:incidents_incident_action_add", args=[incident.pk])
    response = client.post(url, {"description": "x", "owner": outsider.pk, "due_on": "2026-06-30"})
    assert response.status_code == 404
    assert not IncidentCorrectiveAction.objects.exists()


def test_a_drill_never_notifies_real_people(privacy_officer, customer):
    # given a drill whose scope names a real customer
    drill = make_incident(privacy_officer, is_drill=True)
    scope = services.incident_scope_by_upload(
        incident=drill, actor=privacy_officer, data=b"M000000001\n", enqueue=False
    )
    services.incident_scope_advance(scope_id=scope.pk)
    # when notices are asked for, then refused and nobody is mailed
    with pytest.raises(IncidentError, match="訓練"):
        services.incident_notices_queue(incident=drill, actor=privacy_officer, enqueue=False)
    assert not IncidentNotice.objects.exists()
    assert mail.outbox == []


def test_a_drills_report_says_it_is_a_drill(client, security_user):
    drill = make_incident(security_user, is_drill=True)
    client.force_login(security_user)
    html = client.get(
        reverse("admin:incidents_incident_report", args=[drill.pk, "ppc_prelim"])
    ).content.decode()
    assert "【訓練】" in html


# --- overdue corrective actions, the drill reminder, the public notice ---------------------------------


def test_a_corrective_action_is_overdue_from_the_day_after_its_due_date_in_jst(action):
    # 2026-06-30 23:59 JST is still in time; 2026-07-01 00:00 JST (= 06-30 15:00 UTC) is past it
    assert not action.overdue(dt.datetime(2026, 6, 30, 23, 59, tzinfo=JST))
    assert action.overdue(dt.datetime(2026, 6, 30, 15, 0, tzinfo=dt.UTC))
    action.completed_at = dt.datetime(2026, 7, 5, tzinfo=JST)
    assert not action.overdue(dt.datetime(2026, 8, 1, tzinfo=JST))


def test_the_incident_page_flags_an_overdue_corrective_action(client, incident, security_user):
    services.incident_action_add(
        incident=incident,
        actor=security_user,
        description="古い対策",
        owner=security_user,
        due_on=dt.date(2020, 1, 1),
    )
    client.force_login(security_user)
    html = client.get(reverse("admin:incidents_incident_change", args=[incident.pk])).content.decode()
    assert 'class="incident-overdue">期限超過' in html


@pytest.mark.parametrize(
    ("last", "now", "overdue"),
    [
        (None, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), True),
        # a drill on 2025-03-10 JST: still fine on 2026-03-10 JST, overdue on 2026-03-11 JST
        (
            dt.datetime(2025, 3, 10, 10, 0, tzinfo=dt.UTC),
            dt.datetime(2026, 3, 10, 14, 0, tzinfo=dt.UTC),
            False,
        ),
        (
            dt.datetime(2025, 3, 10, 10, 0, tzinfo=dt.UTC),
            dt.datetime(2026, 3, 10, 15, 0, tzinfo=dt.UTC),
            True,
        ),
        # 29 February: twelve months later is 28 February
        (dt.datetime(2028, 2, 29, 3, 0, tzinfo=dt.UTC), dt.datetime(2029, 2, 28, 3, 0, tzinfo=dt.UTC), False),
        (dt.datetime(2028, 2, 29, 3, 0, tzinfo=dt.UTC), dt.datetime(2029, 3, 1, 3, 0, tzinfo=dt.UTC), True),
    ],
)
def test_twelve_months_without_a_drill(last, now, overdue):
    from incidents.rules import drill_overdue

    assert drill_overdue(last, now) is overdue


def test_the_list_shows_the_last_drill_and_flags_a_year_without_one(client, security_user):
    client.force_login(security_user)
    url = reverse("admin:incidents_incident_changelist")
    # given no drill: flagged
    html = client.get(url).content.decode()
    assert "訓練の記録がありません" in html and "12か月以上訓練が行われていません" in html
    # given a drill of last month: shown with its date, not flagged
    aware = timezone.now() - dt.timedelta(days=30)
    make_incident(
        security_user, is_drill=True, discovered_at=aware, aware_at=aware, drill_findings="連絡網の不備"
    )
    html = client.get(url).content.decode()
    assert "前回の訓練" in html and "12か月以上訓練が行われていません" not in html


def test_the_public_notice_is_recorded_with_the_incident(incident, security_user):
    at = timezone.now()
    services.incident_update(
        incident=incident,
        actor=security_user,
        public_notice_at=at,
        public_notice_where="自社サイトのお知らせ",
    )
    incident.refresh_from_db()
    assert (incident.public_notice_at, incident.public_notice_where) == (at, "自社サイトのお知らせ")
