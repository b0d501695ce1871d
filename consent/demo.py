"""Demo consents, objections and special-care records for `manage.py seed_demo` (ConsentConfig.ready())."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from consent import services
from consent.models import ConsentEvent, Objection, SpecialCareRecord
from crm.models import Customer

# Grants for about two customers in three, a withdrawal for some, and health data (with its consent) for a
# few: every page of the consent admin has rows, as a few months of use would leave them.
GRANTED = ("customer_management", "marketing_email", "personalisation")
SPECIAL_CARE_PURPOSE = "special_care_health"


def seed_consents(*, actor: Any, customers: int = 60) -> None:
    """Consent events and states for the first demo customers, and special-care records with consent.
    Does nothing when the ledger already has rows (seed_demo runs on every `./dev up`)."""
    if ConsentEvent.objects.exists():
        return
    channels = [c for c, _label in ConsentEvent.Channel.choices if c != ConsentEvent.Channel.API]
    now = timezone.now()
    people = Customer.objects.filter(status=Customer.Status.ACTIVE).order_by("pk")[:customers]
    with_health_data: set[int] = set()
    for i, customer in enumerate(people):
        if i % 3 == 2:
            continue  # never asked
        channel = channels[i % len(channels)]
        when = now - dt.timedelta(days=400 - i * 5)
        for code in GRANTED[: 1 + i % len(GRANTED)]:
            services.consent_grant(
                customer=customer, purpose_code=code, channel=channel, occurred_at=when, actor=actor
            )
        if i % 4 == 0 and i % len(GRANTED) >= 1:
            services.consent_withdraw(
                customer=customer,
                purpose_code="marketing_email",
                channel=channel,
                occurred_at=when + dt.timedelta(days=30),
                actor=actor,
            )
        if customer.team_id not in with_health_data:
            with_health_data.add(customer.team_id)  # one per team: every team's staff sees the page filled
            services.consent_grant(
                customer=customer,
                purpose_code=SPECIAL_CARE_PURPOSE,
                channel="paper",
                occurred_at=when,
                actor=actor,
            )
            services.special_care_record_create(
                customer=customer,
                purpose_code=SPECIAL_CARE_PURPOSE,
                kind=SpecialCareRecord.Kind.HEALTH_CHECK,
                content="健康診断の結果: 要経過観察（デモ）",
                actor=actor,
            )
            # and, per team, one objection to direct marketing (GDPR Art. 21(3)): the objection list has rows
            services.objection_record(
                customer=customer,
                scope=Objection.Scope.DIRECT_MARKETING,
                source=Objection.Source.ADMIN,
                occurred_at=when + dt.timedelta(days=60),
                actor=actor,
            )
