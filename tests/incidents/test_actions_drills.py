"""Corrective actions and drills (issue #15, step 5)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.urls import reverse

from incidents import services
from incidents.models import Incident, IncidentCorrectiveAction, IncidentNotice
from incidents.services import IncidentError
from tests.incidents.conftest import make_incident

pytestmark = pytest.mark.django_db

S = Incident.Status


def _to_recovered(incident, actor):
    for step in (S.CONTAINED, S.ASSESSED, S.NOTIFIED, S.RECOVERED):
        services.incident_transition(incident=incident, to=step, actor=actor)


def test_an_incident_with_an_open_corrective_action_cannot_be_closed(incident, security_user):
    # given a recovered incident with a corrective action not yet done
    action = services.incident_action_add(
        incident=incident,
        actor=security_user,
        description="送信前の宛先確認を二重化",
        owner=security_user,
        due_on=dt.date(2026, 6, 30),
    )
    _to_recovered(incident, security_user)
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
