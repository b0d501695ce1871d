"""Demo consents, objections and special-care records for `manage.py seed_demo` (ConsentConfig.ready())."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from consent import services
from consent.models import ConsentEvent, Objection, SpecialCareRecord
from consent.requests import services as desk
from consent.requests.models import DataSubjectRequest
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


def seed_requests(*, actor: Any) -> None:
    """Data-subject requests in each state of the desk, assigned to the demo support login, so the queue
    (nearest deadline first, overdue and due-soon flagged) is not empty; one unassigned for the support lead.
    Does nothing when requests exist."""
    from django.contrib.auth import get_user_model

    if DataSubjectRequest.objects.exists():
        return
    users = get_user_model().objects
    handler = users.filter(username="support").first()
    lead = users.filter(username="support_lead").first()
    if handler is None or lead is None:
        return
    now = timezone.now()
    # Not the newest few: seed_demo erases, holds and stops those (crm seed_demo._records).
    people = list(Customer.objects.filter(status=Customer.Status.ACTIVE).order_by("-pk")[5:11])
    if len(people) < 4:
        return

    def received(kind: str, days_ago: int, jurisdiction: str = "appi", who: Customer | None = None) -> Any:
        return desk.request_create(
            kind=kind,
            channel="email",
            received_at=now - dt.timedelta(days=days_ago, hours=2),
            jurisdiction=jurisdiction,
            requester_name=f"{who.family_name} {who.given_name}" if who else "デモ 請求者",
            requester_email=who.email if who else "requester@example.jp",
            actor=handler,
            handler=handler,
        )

    received("disclosure", 12)  # due within 3 days
    checking = received("portability", 3, "gdpr", people[0])
    desk.request_start_verification(request=checking, actor=handler)
    correcting = received("correction", 20, "both", people[1])  # overdue
    desk.request_link_customer(request=correcting, customer=people[1], actor=handler)
    desk.request_verify_identity(
        request=correcting, actor=handler, method="id_document", evidence_reference="DOC-1"
    )
    erasing = received("stop_use_erasure", 5, "appi", people[2])
    desk.request_link_customer(request=erasing, customer=people[2], actor=handler)
    desk.request_verify_identity(request=erasing, actor=handler, method="call_back")
    desk.request_ask_erasure_approval(request=erasing, action="erase", actor=handler)
    done = received("purpose_notice", 30, "appi", people[3])
    desk.request_verify_identity(request=done, actor=handler, method="member_login")
    desk.request_complete(request=done, actor=handler, note="利用目的を通知しました（デモ）。")
    refused = received("disclosure", 40)
    desk.request_reject(
        request=refused,
        actor=handler,
        ground="identity",
        explanation="本人確認書類のご提出がありませんでした（デモ）。",
    )
    desk.request_create(
        kind="objection",
        channel="api",
        received_at=now - dt.timedelta(days=1),
        jurisdiction="gdpr",
        requester_email="api-requester@example.jp",
        actor=lead,
    )
