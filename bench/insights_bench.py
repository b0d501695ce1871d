"""Insights benchmark on a copy of the one-million-customer database: the KPI indicators and a segment count.

    createdb -T crm_bench crm_bench_<you>; DATABASE_URL=postgres://…/crm_bench_<you> python manage.py migrate
    DATABASE_URL=postgres://root@127.0.0.1:5432/crm_bench_<you> python bench/insights_bench.py [--rounds 3]

Each KPI statement (crm.insights.selectors, one GROUP BY per indicator) is timed beside its floor measured in
the same run: one GROUP BY of the whole table it reads by JST month (`SELECT month, count(*) … GROUP BY 1`),
the least any per-month figure over every row costs. Then the whole page's computation (every indicator,
twelve months), the cached read of the same months, and a segment's live count (exact under the admin's count
timeout, else the planner's estimate) beside a plain COUNT(*) of the same filter. Never run on crm_bench
itself (it writes the cache only).

Not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "false")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from crm.insights import rules, selectors  # noqa: E402
from crm.insights.models import Segment  # noqa: E402
from crm.models import Customer  # noqa: E402


def timed(fn: Callable[[], Any], rounds: int) -> float:
    """Median seconds of `rounds` calls."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


FLOOR_COLUMN = {"crm_customer": "collected_at", "crm_purchase": "purchased_at"}


def floor(table: str) -> Callable[[], Any]:
    """The least a per-month indicator over the whole table costs: one GROUP BY of its rows by JST month."""
    month = selectors._month_sql(FLOOR_COLUMN[table])

    def run() -> Any:
        with connection.cursor() as cur:
            cur.execute(f'SELECT {month}, count(*) FROM "{table}" GROUP BY 1')
            return cur.fetchall()

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if connection.settings_dict["NAME"] == "crm_bench":
        sys.exit("Run on a copy of crm_bench, never on it (HELPER_RULES).")
    months = rules.months_back(timezone.localdate(), 12)
    since = months[0]
    customers = Customer._meta.db_table
    purchases = "crm_purchase"
    with connection.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{customers}"')
        n_customers = cur.fetchone()[0]
        cur.execute(f'SELECT count(*) FROM "{purchases}"')
        n_purchases = cur.fetchone()[0]
    print(f"customers {n_customers:,}, purchases {n_purchases:,}; median of {args.rounds} rounds (s)\n")

    cases: list[tuple[str, Callable[[], Any], str]] = [
        ("new customers per month (CAC)", selectors.new_customers_by_month, customers),
        ("first buyers per month (LTV)", selectors.first_buyers_by_month, purchases),
        (
            "revenue + buyers since (LTV, repeat)",
            lambda: selectors.revenue_and_buyers_since(since),
            purchases,
        ),
        ("joined / left (churn)", selectors.joined_and_left_by_month, customers),
        ("data quality", lambda: selectors.data_quality_by_month(since), customers),
    ]
    floors: dict[str, float] = {}
    print(f"{'indicator':<34} {'statement':>10} {'floor':>13} {'ratio':>7}")
    for label, fn, table in cases:
        if table not in floors:
            floors[table] = timed(floor(table), args.rounds)
        seconds = timed(fn, args.rounds)
        print(f"{label:<34} {seconds:>10.3f} {floors[table]:>13.3f} {seconds / floors[table]:>7.1f}")

    page = timed(lambda: selectors.kpi_months(months=months, refresh=True), args.rounds)
    cached = timed(lambda: selectors.kpi_months(months=months), args.rounds)
    print(f"\nwhole KPI page, computed (12 months): {page:.3f} s; from the cache: {cached * 1000:.1f} ms")

    user = get_user_model().objects.filter(is_superuser=True).first()
    if user is None:
        user = get_user_model().objects.create(username="insights-bench", is_superuser=True, is_staff=True)
    for filters in ({"prefectures": ["13"]}, {"prefectures": ["13"], "min_purchases": 2}):
        segment = Segment(name="bench", filters=filters)
        count_result: list[tuple[int, bool]] = []

        def live_count(s: Segment = segment, out: list[tuple[int, bool]] = count_result) -> None:
            out.append(selectors.segment_count(user=user, segment=s))

        seconds = timed(live_count, args.rounds)
        counted: list[int] = []

        def full_count(s: Segment = segment, out: list[int] = counted) -> None:
            out.append(selectors.segment_members(user=user, segment=s).count())

        exact = timed(full_count, args.rounds)
        count, is_exact = count_result[-1]
        kind = "exact" if is_exact else "estimate"
        print(
            f"segment {filters}: live count {count:,} ({kind}) in {seconds:.3f} s; "
            f"COUNT(*) {counted[-1]:,} in {exact:.3f} s"
        )


if __name__ == "__main__":
    main()
