"""Incidents' fixtures: an incident as the security role records it, and a response-team member."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from crm.permissions import ROLE_STAFF
from incidents import services
from incidents.models import Incident
from tests.factories import UserFactory

JST = ZoneInfo("Asia/Tokyo")


def make_incident(actor: Any, **facts: Any) -> Incident:
    base: dict[str, Any] = {
        "title": "メール誤送信",
        "kind": Incident.Kind.MISDELIVERY,
        "discovered_at": dt.datetime(2026, 4, 1, 9, 0, tzinfo=JST),
        "aware_at": dt.datetime(2026, 4, 1, 10, 0, tzinfo=JST),
    }
    base.update(facts)
    return services.incident_create(actor=actor, **base)


def to_recovered(incident: Incident, actor: Any) -> None:
    """Move `incident` through each step up to 復旧, the one before 終結."""
    steps = Incident.Status
    for step in (steps.CONTAINED, steps.ASSESSED, steps.NOTIFIED, steps.RECOVERED):
        services.incident_transition(incident=incident, to=step, actor=actor)


@pytest.fixture
def incident(security_user):
    return make_incident(security_user)


@pytest.fixture
def responder(incident, security_user):
    """Staff put on `incident`'s response team (and on no other)."""
    user = UserFactory(username="responder", roles=[ROLE_STAFF])
    services.incident_team_add(incident=incident, user=user, actor=security_user)
    return type(user).objects.get(pk=user.pk)
