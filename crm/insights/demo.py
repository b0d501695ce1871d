"""Demo data of the insights for `seed_demo` (registered with crm.demo.register_demo_seeder): six months of
marketing spend per channel and of e-mail campaign results, one saved segment and one anonymised export of it
(so the export records list shows its report). Safe to run again."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from crm.insights import rules, services
from crm.insights.models import CampaignResult, MarketingSpend, Segment, SegmentExport

DEMO_CHANNELS = ("web_form", "app", "event")
DEMO_SEGMENT = "東京都の購買者（2回以上）"


def seed_insights(*, actor: Any) -> None:
    """Spend, campaign results, a segment and one anonymised export by the demo's staff lead."""
    rng = random.Random(18)
    for month in rules.months_back(timezone.localdate(), 6):
        for channel in DEMO_CHANNELS:
            MarketingSpend.objects.get_or_create(
                month=month, channel=channel, defaults={"amount": Decimal(rng.randrange(100, 800) * 1000)}
            )
        delivered = rng.randrange(8000, 12000)
        opened = int(delivered * rng.uniform(0.18, 0.32))
        CampaignResult.objects.get_or_create(
            campaign_code=f"newsletter-{month:%Y-%m}",
            defaults={
                "name": f"{month:%Y年%m月}のお知らせ",
                "sent_on": month.replace(day=10),
                "sent": delivered + rng.randrange(50, 300),
                "delivered": delivered,
                "opened": opened,
                "clicked": int(opened * rng.uniform(0.1, 0.25)),
            },
        )
    segment, _created = Segment.objects.get_or_create(
        name=DEMO_SEGMENT,
        defaults={
            "description": "東京都の顧客のうち購買が2回以上の人",
            "filters": {"prefectures": ["13"], "min_purchases": 2},
            "created_by": actor,
        },
    )
    lead = get_user_model().objects.filter(username="staff_lead").first()
    if lead is not None and not SegmentExport.objects.filter(segment=segment).exists():
        services.segment_export_anonymised(user=lead, segment=segment, k=5)
