"""A demo incident for `manage.py seed_demo` (registered in IncidentsConfig.ready()): the incident pages of
the security team and the privacy officer have a record to open, with its clocks running."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from incidents import services
from incidents.models import Incident


def seed_incidents(*, actor: Any) -> None:
    """One misdelivery found yesterday, contained; does nothing when an incident exists (seed_demo runs on
    every `./dev up`)."""
    if Incident.objects.exists():
        return
    aware = timezone.now() - dt.timedelta(hours=30)
    incident = services.incident_create(
        actor=actor,
        title="メール誤送信（デモ）",
        description="キャンペーンメールの宛先リストを取り違え、別の顧客へ送信した（デモデータ）。",
        kind=Incident.Kind.MISDELIVERY,
        occurred_at=aware - dt.timedelta(hours=6),
        discovered_at=aware - dt.timedelta(hours=1),
        aware_at=aware,
    )
    services.incident_transition(incident=incident, actor=actor, to=Incident.Status.CONTAINED)
