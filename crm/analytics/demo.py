"""Demo data of the analytics for `seed_demo` (registered with crm.demo.register_demo_seeder in ready()):
one purchase import per team through the import service (a CSV of e-commerce customers, some new to the CRM,
with one to eight purchases each over eighteen months), then the RFM scores and a CLV fit over every customer
the analytics purpose may use. Safe to run again: a team that has an import is left alone, and the scores and
fit are computed anew."""

from __future__ import annotations

import datetime as dt
import io
import random
from typing import Any

from django.utils import timezone

from crm.analytics import services
from crm.analytics.eligibility import eligible_customers
from crm.analytics.models import PurchaseImport
from crm.models import Team

DEMO_BUYERS_PER_TEAM = 40
DEMO_CATEGORIES = ("食品", "日用品", "衣料", "家電", "書籍")
DEMO_CHANNELS = ("web_form", "app", "store_pos")


def _demo_csv(team: Team, today: dt.date, rng: random.Random) -> bytes:
    lines = ["external_id,purchased_at,amount,quantity,category,channel"]
    for n in range(1, DEMO_BUYERS_PER_TEAM + 1):
        first = today - dt.timedelta(days=rng.randrange(60, 540))
        for _ in range(rng.randrange(1, 9)):
            day = first + dt.timedelta(days=rng.randrange(0, (today - first).days + 1))
            amount = rng.randrange(8, 300) * 100
            category = rng.choice(DEMO_CATEGORIES)
            channel = rng.choice(DEMO_CHANNELS)
            lines.append(f"EC-{team.code}-{n:04d},{day.isoformat()},{amount},1,{category},{channel}")
    return ("\n".join(lines) + "\n").encode()


def seed_analytics(*, actor: Any) -> None:
    """An import per team, then RFM scores and a CLV fit (weeks, calibrated up to today)."""
    today = timezone.localdate()
    rng = random.Random(18)
    for team in Team.objects.order_by("pk"):
        if PurchaseImport.objects.filter(team=team).exists():
            continue
        batch = PurchaseImport.objects.create(team=team, created_by=actor, file_name="demo-ec-purchases.csv")
        services.purchase_import_run(
            batch_id=batch.pk, stream=io.BytesIO(_demo_csv(team, today, rng)), actor=actor
        )
    eligible = eligible_customers()
    services.rfm_compute(eligible=eligible, as_of=today, actor=actor)
    services.clv_fit_run(eligible=eligible, calibration_end=today, time_unit="week", actor=actor)
