"""Reads of the insights: the KPI page's indicators (one GROUP BY per indicator, cached per month), segment
membership and counts (among the customers the user may see: restrict()).

The KPI statements aggregate the whole table: no customer leaves them, only per-month totals, so they are
not run through the gate; the page itself needs the KPI permission (crm.view_kpi). Tables and columns come
from the models' _meta.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from django.db import connection
from django.db.models import Avg, Count, Exists, OuterRef, Q, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from crm.analytics.models import ClvFit, ClvScore, RfmRun, RfmScore
from crm.insights import hooks, rules
from crm.insights.models import CampaignResult, MarketingSpend, Segment
from crm.models import Customer, CustomerEvent, Purchase
from crm.paginators import capped_count, query_estimate

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

    from crm.models import CustomerQuerySet

Series = dict[dt.date, Any]


def _month_sql(column: str) -> str:
    return f"date_trunc('month', {column} AT TIME ZONE 'Asia/Tokyo')::date"


def _rows(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cur:
        cur.execute(sql, params or [])
        return cur.fetchall()


def _tables() -> dict[str, str]:
    return {"c": Customer._meta.db_table, "p": Purchase._meta.db_table}


def new_customers_by_month() -> Series:
    """Customers acquired per JST month (collected_at): the denominator of CAC."""
    sql = f'SELECT {_month_sql("collected_at")}, count(*) FROM "{_tables()["c"]}" GROUP BY 1'  # noqa: S608
    return {m: n for m, n in _rows(sql)}


def spend_by_month() -> Series:
    rows = MarketingSpend.objects.values("month").annotate(total=Sum("amount")).values_list("month", "total")
    return {m: total for m, total in rows}


def first_buyers_by_month() -> Series:
    """Customers per month of their first purchase (all history: the denominator of the cumulative LTV).
    Purchases unlinked by erasure count nowhere."""
    p = _tables()["p"]
    sql = f"""
        SELECT {_month_sql("f")}, count(*)
        FROM (SELECT min(purchased_at) AS f FROM "{p}" WHERE customer_id IS NOT NULL GROUP BY customer_id) x
        GROUP BY 1
    """  # noqa: S608
    return {m: n for m, n in _rows(sql)}


# Key of the revenue before the first month shown (one sum, no per-month grouping of the older history).
BEFORE = dt.date.min


def revenue_and_buyers_since(since: dt.date) -> tuple[Series, Series]:
    """Revenue and distinct buying customers per month from `since` (the purchased_at index's range), and the
    revenue before it under the key BEFORE: what the cumulative LTV and the repeat rate need, without grouping
    every purchase of the history by month (bench/insights_bench.py)."""
    p = _tables()["p"]
    start = dt.datetime.combine(since, dt.time.min, tzinfo=rules.JST)
    sql = f"""
        SELECT {_month_sql("purchased_at")}, sum(amount), count(DISTINCT customer_id)
        FROM "{p}" WHERE customer_id IS NOT NULL AND purchased_at >= %s GROUP BY 1
        UNION ALL
        SELECT NULL, coalesce(sum(amount), 0), 0 FROM "{p}"
        WHERE customer_id IS NOT NULL AND purchased_at < %s
    """  # noqa: S608
    rows = _rows(sql, [start, start])
    revenue = {m if m is not None else BEFORE: r for m, r, _b in rows}
    buyers = {m: b for m, _r, b in rows if m is not None}
    return revenue, buyers


def joined_and_left_by_month() -> tuple[Series, Series]:
    """Customers per month of acquisition and per month of leaving (退会), in one GROUP BY."""
    c = _tables()["c"]
    sql = f"""
        SELECT m, sum(j), sum(l) FROM (
            SELECT {_month_sql("collected_at")} AS m, 1 AS j, 0 AS l FROM "{c}"
            UNION ALL
            SELECT {_month_sql("closed_at")}, 0, 1 FROM "{c}" WHERE closed_at IS NOT NULL) x
        GROUP BY m
    """  # noqa: S608
    rows = _rows(sql)
    return {m: int(j) for m, j, _l in rows}, {m: int(n) for m, _j, n in rows}


def email_rates_by_month() -> tuple[Series, Series]:
    """Open and click rates (%) of the campaigns sent in each month: opened (clicked) / delivered."""
    rows = (
        CampaignResult.objects.annotate(m=TruncMonth("sent_on"))
        .values("m")
        .annotate(d=Sum("delivered"), o=Sum("opened"), c=Sum("clicked"))
        .values_list("m", "d", "o", "c")
    )
    opens, clicks = {}, {}
    for m, delivered, opened, clicked in rows:
        opens[m] = rules.percent(opened, delivered)
        clicks[m] = rules.percent(clicked, delivered)
    return opens, clicks


# Fields whose presence the data-quality indicator measures (clear or encrypted: empty is '' or NULL).
COMPLETENESS_FIELDS = ("email", "phone", "postal_code", "address", "birth_date")
FRESH_DAYS = 365


def data_quality_by_month(since: dt.date) -> dict[str, Series]:
    """Per month of acquisition: completeness (% of the contact fields filled), duplicates (% of customers
    sharing their e-mail blind index with another customer) and freshness (% active within FRESH_DAYS)."""
    c = _tables()["c"]
    filled = " + ".join(
        f"(CASE WHEN coalesce({f}::text, '') <> '' THEN 1 ELSE 0 END)" for f in COMPLETENESS_FIELDS
    )
    sql = f"""
        WITH dup AS (
            SELECT email_bidx FROM "{c}" WHERE email_bidx <> '' GROUP BY email_bidx HAVING count(*) > 1)
        SELECT {_month_sql("collected_at")} AS m, count(*),
               sum({filled}),
               count(*) FILTER (WHERE dup.email_bidx IS NOT NULL),
               count(*) FILTER (WHERE last_activity_at >= %s)
        FROM "{c}" LEFT JOIN dup USING (email_bidx)
        WHERE collected_at >= %s
        GROUP BY 1
    """  # noqa: S608
    fresh_since = timezone.now() - dt.timedelta(days=FRESH_DAYS)
    start = dt.datetime.combine(since, dt.time.min, tzinfo=rules.JST)
    out: dict[str, Series] = {"completeness": {}, "duplicates": {}, "freshness": {}}
    for m, n, filled_count, dups, fresh in _rows(sql, [fresh_since, start]):
        out["completeness"][m] = rules.percent(filled_count, n * len(COMPLETENESS_FIELDS))
        out["duplicates"][m] = rules.percent(dups, n)
        out["freshness"][m] = rules.percent(fresh, n)
    return out


# --- the page -------------------------------------------------------------------------------------

CACHE_PREFIX = "insights:kpi:v1"
PAST_MONTH_TTL = 24 * 3600  # a closed month changes only by late imports: a day
CURRENT_MONTH_TTL = 5 * 60


def _compute(months: list[dt.date]) -> dict[dt.date, dict[str, float | None]]:
    """Every indicator for `months`: one statement per indicator, then per month."""
    since = months[0]
    new = new_customers_by_month()
    spend = spend_by_month()
    first_buyers = first_buyers_by_month()
    revenue, buyers = revenue_and_buyers_since(since)
    joined, left = joined_and_left_by_month()
    opens, clicks = email_rates_by_month()
    quality = data_quality_by_month(since)
    columns = {
        "cac": rules.cac(spend, new, months),
        "ltv": rules.cumulative_ltv(revenue, first_buyers, months),
        "churn": rules.churn(joined, left, months),
        "repeat": rules.repeat_rate(buyers, first_buyers, months),
        "open_rate": [opens.get(m) for m in months],
        "click_rate": [clicks.get(m) for m in months],
        "new_customers": [new.get(m, 0) for m in months],
        "spend": [float(spend.get(m, Decimal(0))) for m in months],
        **{key: [series.get(m) for m in months] for key, series in quality.items()},
    }
    for entry in hooks.kpi_series():
        for label, values in entry.source(months).items():
            columns[f"{entry.key}:{label}"] = [values.get(m.isoformat()) for m in months]
    return {m: {key: values[i] for key, values in columns.items()} for i, m in enumerate(months)}


def kpi_months(*, months: list[dt.date], refresh: bool = False) -> dict[dt.date, dict[str, float | None]]:
    """The indicators per month, from the cache where every month is there (a past month for a day, the
    current one for five minutes), else computed for all the months at once and cached per month."""
    keys = {m: f"{CACHE_PREFIX}:{m.isoformat()}" for m in months}
    if not refresh:
        cached = cache.get_many(list(keys.values()))
        if len(cached) == len(keys):
            return {m: cached[keys[m]] for m in months}
    values = _compute(months)
    current = rules.month_of(timezone.now())
    for m, row in values.items():
        cache.set(keys[m], row, CURRENT_MONTH_TTL if m >= current else PAST_MONTH_TTL)
    return values


def clv_summary() -> dict[str, Any] | None:
    """The latest CLV fit of the analytics (BG/NBD and Gamma-Gamma): its calibration end, how many customers
    it scored and their mean expected CLV (yen), beside the page's simple LTV. Cached per fit (a fit's scores
    never change); None before the first fit."""
    fit = ClvFit.objects.order_by("-id").values("pk", "calibration_end", "horizon", "time_unit").first()
    if fit is None:
        return None
    key = f"{CACHE_PREFIX}:clv:{fit['pk']}"
    summary = cache.get(key)
    if summary is None:
        totals = ClvScore.objects.filter(fit_id=fit["pk"]).aggregate(n=Count("id"), mean=Avg("clv"))
        summary = {
            "calibration_end": fit["calibration_end"].isoformat(),
            "horizon": fit["horizon"],
            "time_unit": fit["time_unit"],
            "customers": totals["n"],
            "mean_clv": round(float(totals["mean"]), 0) if totals["mean"] is not None else None,
        }
        cache.set(key, summary, PAST_MONTH_TTL)
    return summary


def kpi_chart_data(*, months: list[dt.date], refresh: bool = False) -> dict[str, Any]:
    """What the page's script draws: month labels and one list per indicator (None: no data)."""
    values = kpi_months(months=months, refresh=refresh)
    keys = list(values[months[0]].keys()) if months else []
    return {
        "months": [m.strftime("%Y-%m") for m in months],
        "series": {key: [values[m].get(key) for m in months] for key in keys},
        "extra": [
            {"key": entry.key, "title": str(entry.title), "unit": entry.unit} for entry in hooks.kpi_series()
        ],
        "clv": clv_summary(),
    }


# --- segments -------------------------------------------------------------------------------------


def segment_filter(
    qs: CustomerQuerySet, filters: rules.SegmentFilters, *, now: dt.datetime | None = None
) -> CustomerQuerySet:
    """Narrow customers to a segment's filters, set-based: attributes as column filters, behaviour as
    semi-joins on GROUP BY subqueries over purchases and events (one statement whatever the size)."""
    now = now or timezone.now()
    if filters.prefectures:
        qs = qs.filter(prefecture__in=filters.prefectures)
    if filters.teams:
        qs = qs.filter(team_id__in=filters.teams)
    if filters.statuses:
        qs = qs.filter(status__in=filters.statuses)
    if filters.channels:
        qs = qs.filter(collection_channel__in=filters.channels)
    if filters.genders:
        qs = qs.filter(gender__in=filters.genders)
    buyers = Purchase.objects.filter(customer_id__isnull=False).values("customer_id")
    if filters.min_purchases or filters.max_purchases is not None or filters.min_amount:
        having = Q()
        if filters.min_purchases:
            having &= Q(n__gte=filters.min_purchases)
        if filters.max_purchases is not None:
            having &= Q(n__lte=filters.max_purchases)
        if filters.min_amount:
            having &= Q(total__gte=filters.min_amount)
        matching = buyers.annotate(n=Count("id"), total=Sum("amount")).filter(having).values("customer_id")
        if filters.max_purchases is not None and not filters.min_purchases and not filters.min_amount:
            # "at most N purchases" includes customers with none
            qs = qs.filter(Q(pk__in=matching) | ~Exists(Purchase.objects.filter(customer_id=OuterRef("pk"))))
        else:
            qs = qs.filter(pk__in=matching)
    if filters.purchased_within_days is not None:
        since = now - dt.timedelta(days=filters.purchased_within_days)
        qs = qs.filter(Exists(Purchase.objects.filter(customer_id=OuterRef("pk"), purchased_at__gte=since)))
    if filters.not_purchased_within_days is not None:
        since = now - dt.timedelta(days=filters.not_purchased_within_days)
        qs = qs.filter(~Exists(Purchase.objects.filter(customer_id=OuterRef("pk"), purchased_at__gte=since)))
    if filters.min_events or filters.event_kind or filters.events_within_days is not None:
        events = CustomerEvent.objects.filter(customer_id__isnull=False)
        if filters.event_kind:
            events = events.filter(kind=filters.event_kind)
        if filters.events_within_days is not None:
            events = events.filter(occurred_at__gte=now - dt.timedelta(days=filters.events_within_days))
        active = (
            events.values("customer_id")
            .annotate(n=Count("id"))
            .filter(n__gte=max(filters.min_events or 1, 1))
        )
        qs = qs.filter(pk__in=active.values("customer_id"))
    return _model_filters(qs, filters)


def _model_filters(qs: CustomerQuerySet, filters: rules.SegmentFilters) -> CustomerQuerySet:
    """The analytics' scores of the latest RFM run and CLV fit (crm.analytics): a customer without a score
    (not modelled: not usable for analytics, or no purchase) matches no score filter."""
    if filters.rfm_segments:
        run = RfmRun.objects.order_by("-id").first()
        scored = RfmScore.objects.filter(
            run=run, slot=run.slot if run else 0, segment__in=filters.rfm_segments
        )
        qs = qs.filter(pk__in=scored.values("customer_id"))
    if (
        filters.min_clv is not None
        or filters.min_p_alive_pct is not None
        or filters.max_p_alive_pct is not None
    ):
        fit = ClvFit.objects.order_by("-id").values_list("pk", flat=True).first()
        scores = ClvScore.objects.filter(fit_id=fit)
        if filters.min_clv is not None:
            scores = scores.filter(clv__gte=filters.min_clv)
        if filters.min_p_alive_pct is not None:
            scores = scores.filter(p_alive__gte=filters.min_p_alive_pct / 100)
        if filters.max_p_alive_pct is not None:
            scores = scores.filter(p_alive__lte=filters.max_p_alive_pct / 100)
        qs = qs.filter(pk__in=scores.values("customer_id"))
    return qs


def segment_members(*, user: User | AnonymousUser, segment: Segment) -> CustomerQuerySet:
    """The segment's customers among those `user` may view (the gate first, then the filters)."""
    filters = rules.SegmentFilters.parse(segment.filters)
    return segment_filter(Customer.objects.restrict(user, "view"), filters)


# Above this many members, or when counting takes longer than SEGMENT_COUNT_TIMEOUT_MS, the live count is
# PostgreSQL's estimate. A segment's page is opened far less often than a list, so it may count for longer
# than the list's 150 ms: the planner's estimate of a behaviour filter (a semi-join on a GROUP BY) can be off
# by a factor of four at a million customers (bench/README.md).
EXACT_COUNT_CAP = 100_000
SEGMENT_COUNT_TIMEOUT_MS = 3_000


def segment_count(*, user: User | AnonymousUser, segment: Segment) -> tuple[int, bool]:
    """(count, exact): the exact count up to EXACT_COUNT_CAP within SEGMENT_COUNT_TIMEOUT_MS, else the
    planner's estimate (crm.paginators.capped_count, query_estimate)."""
    qs = segment_members(user=user, segment=segment)
    exact = capped_count(qs, EXACT_COUNT_CAP, timeout_ms=SEGMENT_COUNT_TIMEOUT_MS)
    if exact is not None and exact < EXACT_COUNT_CAP:
        return exact, True
    return max(query_estimate(qs), exact or 0), False
