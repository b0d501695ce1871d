"""GDPR Art. 34: the persons of a high-risk breach are told, or the ground of Art. 34(3) for not telling them
is recorded with its reason; until one or the other, the incident does not close."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone, translation

from incidents import services
from incidents.models import Incident
from incidents.services import IncidentError
from tests.incidents.conftest import make_incident, to_recovered

pytestmark = pytest.mark.django_db

S = Incident.Status
E = Incident.SubjectNoticeExemption


def _high_risk(actor, **facts):
    # Aware on 1 April 2026: GDPR's 72 hours are long past, so the delay's reason is given too (Art. 33(1)).
    return make_incident(actor, gdpr_applies=True, gdpr_late_reason="調査中", gdpr_high_risk=True, **facts)


def _close(incident, actor) -> None:
    services.incident_transition(incident=incident, to=S.CLOSED, actor=actor)


def test_a_high_risk_incident_with_nobody_told_and_no_ground_does_not_close(security_user):
    # given a high-risk GDPR incident, recovered, with no notice queued and no ground recorded
    incident = _high_risk(security_user)
    to_recovered(incident, security_user)
    # when it is closed, then it is refused in the user's language and stays recovered
    with pytest.raises(IncidentError, match="GDPR第34条"):
        _close(incident, security_user)
    with translation.override("en"), pytest.raises(IncidentError, match=r"high-risk.*GDPR Art\. 34"):
        _close(incident, security_user)
    assert Incident.objects.get(pk=incident.pk).status == S.RECOVERED


def test_a_ground_of_art_34_3_with_its_reason_lets_it_close(security_user):
    # given the ground (a): the data were encrypted, with the reason
    incident = _high_risk(security_user)
    to_recovered(incident, security_user)
    services.incident_update(
        incident=incident,
        actor=security_user,
        gdpr_notice_exemption=E.ENCRYPTED,
        gdpr_notice_exemption_reason="AES-256で暗号化され、鍵は漏えいしていない",
    )
    # when it is closed, then it is
    _close(incident, security_user)
    assert Incident.objects.get(pk=incident.pk).status == S.CLOSED


def test_the_public_communication_instead_needs_its_date(security_user):
    # given the ground (c), a public communication instead, with its reason but not yet made
    incident = _high_risk(security_user)
    to_recovered(incident, security_user)
    services.incident_update(
        incident=incident,
        actor=security_user,
        gdpr_notice_exemption=E.PUBLIC_NOTICE,
        gdpr_notice_exemption_reason="連絡先のない本人が大半",
    )
    # then closing waits for the public communication
    with pytest.raises(IncidentError, match="公表日時"):
        _close(incident, security_user)
    services.incident_update(
        incident=incident,
        actor=security_user,
        public_notice_at=timezone.now() - dt.timedelta(hours=1),
        public_notice_where="自社サイトのお知らせ",
    )
    _close(incident, security_user)
    assert Incident.objects.get(pk=incident.pk).status == S.CLOSED


def test_a_ground_needs_its_reason_and_a_high_risk_under_the_gdpr(security_user):
    incident = _high_risk(security_user)
    # a ground without a reason is refused, and nothing changes
    with pytest.raises(IncidentError, match="通知しない理由"):
        services.incident_update(incident=incident, actor=security_user, gdpr_notice_exemption=E.RISK_REMOVED)
    with translation.override("en"), pytest.raises(IncidentError, match=r"Enter the reason.*Art\. 34\(3\)"):
        services.incident_update(incident=incident, actor=security_user, gdpr_notice_exemption=E.RISK_REMOVED)
    assert Incident.objects.get(pk=incident.pk).gdpr_notice_exemption == ""
    # a ground on an incident without a high risk is refused
    with pytest.raises(IncidentError, match="高いリスクがある事案にのみ"):
        services.incident_update(
            incident=incident,
            actor=security_user,
            gdpr_high_risk=False,
            gdpr_notice_exemption=E.RISK_REMOVED,
            gdpr_notice_exemption_reason="漏えい先から回収済み",
        )
    # the high risk of GDPR Art. 34 only on an incident under the GDPR
    other = make_incident(security_user)
    with pytest.raises(IncidentError, match="GDPRの対象の事案にのみ"):
        services.incident_update(incident=other, actor=security_user, gdpr_high_risk=True)
    assert Incident.objects.get(pk=incident.pk).gdpr_high_risk is True
    assert Incident.objects.get(pk=other.pk).gdpr_high_risk is False


def test_a_high_risk_incident_whose_persons_were_told_closes(privacy_officer, customer):
    # given a high-risk incident whose affected person was queued a notice and sent it
    incident = _high_risk(privacy_officer)
    scope = services.incident_scope_by_upload(
        incident=incident, actor=privacy_officer, data=b"M000000001\n", enqueue=False
    )
    services.incident_scope_advance(scope_id=scope.pk)
    assert services.incident_notices_queue(incident=incident, actor=privacy_officer, enqueue=False) == 1
    services.incident_notices_send_batch(incident_id=incident.pk, enqueue=False)
    to_recovered(incident, privacy_officer)
    # when it is closed, then it is
    _close(incident, privacy_officer)
    assert Incident.objects.get(pk=incident.pk).status == S.CLOSED


def test_a_drill_or_a_low_risk_incident_needs_neither(security_user):
    for incident in (
        _high_risk(security_user, is_drill=True),
        make_incident(security_user, gdpr_applies=True, gdpr_late_reason="調査中"),
    ):
        to_recovered(incident, security_user)
        _close(incident, security_user)
        assert Incident.objects.get(pk=incident.pk).status == S.CLOSED
