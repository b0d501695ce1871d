"""Pure computations of the insights (no ORM): months, the KPI formulas over per-month totals, the segment
filter schema, and the k-anonymity of an anonymised data set (匿名加工情報, APPI Art. 43; 規則34).

Months are calendar months in Asia/Tokyo (legal-rules.md: "All dates are computed in Asia/Tokyo"), named by
their first day.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

JST = ZoneInfo("Asia/Tokyo")


def month_of(value: dt.date | dt.datetime) -> dt.date:
    """The first day of the JST month of a date or an instant."""
    if isinstance(value, dt.datetime):
        value = value.astimezone(JST).date()
    return value.replace(day=1)


def months_back(today: dt.date, count: int) -> list[dt.date]:
    """The `count` months ending with the month of `today`, oldest first."""
    year, month = today.year, today.month
    out = []
    for _ in range(count):
        out.append(dt.date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out[::-1]


def ratio(numerator: float | Decimal | int, denominator: float | Decimal | int) -> float | None:
    """numerator / denominator, None when there is nothing to divide by (a chart's gap, not a zero)."""
    if not denominator:
        return None
    return round(float(numerator) / float(denominator), 6)


def percent(numerator: float | int, denominator: float | int) -> float | None:
    value = ratio(numerator, denominator)
    return None if value is None else round(value * 100, 2)


def cac(
    spend: Mapping[dt.date, Decimal], new_customers: Mapping[dt.date, int], months: Sequence[dt.date]
) -> list[float | None]:
    """Customer acquisition cost per month: the month's spend over every channel / customers acquired that
    month (any channel). None for a month without new customers."""
    return [ratio(spend.get(m, 0), new_customers.get(m, 0)) for m in months]


def cumulative_ltv(
    revenue: Mapping[dt.date, Decimal], first_buyers: Mapping[dt.date, int], months: Sequence[dt.date]
) -> list[float | None]:
    """Lifetime value as average revenue per customer so far: revenue up to the end of the month / customers
    whose first purchase is on or before it. `revenue` and `first_buyers` hold every month with data (earlier
    ones included), so the sums start at the first purchase ever."""
    out = []
    for m in months:
        total = sum((v for k, v in revenue.items() if k <= m), Decimal(0))
        buyers = sum(v for k, v in first_buyers.items() if k <= m)
        out.append(ratio(total, buyers))
    return out


def repeat_rate(
    buyers: Mapping[dt.date, int], first_buyers: Mapping[dt.date, int], months: Sequence[dt.date]
) -> list[float | None]:
    """Share (%) of the month's buyers who had bought in an earlier month: every buyer of the month is either
    buying for the first time that month or a repeat buyer. None for a month without buyers."""
    return [percent(buyers.get(m, 0) - first_buyers.get(m, 0), buyers.get(m, 0)) for m in months]


def churn(
    joined: Mapping[dt.date, int], left: Mapping[dt.date, int], months: Sequence[dt.date]
) -> list[float | None]:
    """Share (%) of customers on the books at the start of the month who left (退会) during it: joined before
    the month minus left before it is the base. Erased customers have no row and count in neither."""
    out = []
    for m in months:
        base = sum(v for k, v in joined.items() if k < m) - sum(v for k, v in left.items() if k < m)
        out.append(percent(left.get(m, 0), base))
    return out


# --- segments ---------------------------------------------------------------------------------------------

LIST_FILTERS = ("prefectures", "teams", "statuses", "channels", "genders", "rfm_segments")
INT_FILTERS = (
    "min_purchases",
    "max_purchases",
    "purchased_within_days",
    "not_purchased_within_days",
    "min_events",
    "events_within_days",
    "min_amount",
    "min_clv",
    "min_p_alive_pct",
    "max_p_alive_pct",
)
PERCENT_FILTERS = ("min_p_alive_pct", "max_p_alive_pct")
STR_FILTERS = ("event_kind",)
MAX_LIST = 100
MAX_INT = 10**9


class SegmentFilterError(ValueError):
    """A segment's filters that do not follow the schema (the message names the key, never a value)."""


@dataclasses.dataclass(frozen=True)
class SegmentFilters:
    """The filters a segment may hold, validated: lists of codes (prefecture JIS codes, team ids, statuses,
    acquisition channels, genders, RFM segments of the latest RFM run) and bounds on behaviour (purchase
    count, days since the last purchase, total spend, events of a kind within N days) and on the latest CLV
    fit's scores (expected CLV in yen, P(alive) in percent)."""

    prefectures: tuple[str, ...] = ()
    teams: tuple[int, ...] = ()
    statuses: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    genders: tuple[str, ...] = ()
    rfm_segments: tuple[str, ...] = ()
    min_purchases: int | None = None
    max_purchases: int | None = None
    purchased_within_days: int | None = None
    not_purchased_within_days: int | None = None
    min_amount: int | None = None
    min_events: int | None = None
    events_within_days: int | None = None
    event_kind: str = ""
    min_clv: int | None = None
    min_p_alive_pct: int | None = None
    max_p_alive_pct: int | None = None

    @classmethod
    def parse(cls, data: Any) -> SegmentFilters:
        """Strict: a dict of known keys only, lists of at most MAX_LIST strings (integers for teams),
        non-negative integers (JSON integers, not strings or booleans) up to MAX_INT."""
        if not isinstance(data, dict):
            raise SegmentFilterError("filters")
        unknown = set(data) - set(LIST_FILTERS) - set(INT_FILTERS) - set(STR_FILTERS)
        if unknown:
            raise SegmentFilterError(sorted(unknown)[0])
        values: dict[str, Any] = {}
        for key in LIST_FILTERS:
            items = data.get(key, [])
            want = int if key == "teams" else str
            if not isinstance(items, list) or len(items) > MAX_LIST:
                raise SegmentFilterError(key)
            if any(type(i) is not want or (want is str and not 0 < len(i) <= 40) for i in items):
                raise SegmentFilterError(key)
            values[key] = tuple(items)
        for key in INT_FILTERS:
            value = data.get(key)
            if value is None:
                continue
            if type(value) is not int or not 0 <= value <= (100 if key in PERCENT_FILTERS else MAX_INT):
                raise SegmentFilterError(key)
            values[key] = value
        kind = data.get("event_kind", "")
        if not isinstance(kind, str) or len(kind) > 20:
            raise SegmentFilterError("event_kind")
        values["event_kind"] = kind
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()
            if v not in ((), None, "")
        }


# --- 匿名加工情報: k-anonymity ----------------------------------------------------------------------------

REGIONS = {
    "北海道": ("01",),
    "東北": ("02", "03", "04", "05", "06", "07"),
    "関東": ("08", "09", "10", "11", "12", "13", "14"),
    "中部": ("15", "16", "17", "18", "19", "20", "21", "22", "23"),
    "近畿": ("24", "25", "26", "27", "28", "29", "30"),
    "中国": ("31", "32", "33", "34", "35"),
    "四国": ("36", "37", "38", "39"),
    "九州・沖縄": ("40", "41", "42", "43", "44", "45", "46", "47"),
}
REGION_OF = {code: region for region, codes in REGIONS.items() for code in codes}


def region_of(prefecture_code: str) -> str:
    """The region (地方) of a JIS prefecture code; '' when unknown."""
    return REGION_OF.get(prefecture_code, "")


def coarse_age_band(band: str) -> str:
    """A ten-year age band ('30代') widened to twenty years ('30〜49歳'); the open bands stay as they are."""
    if band.endswith("代") and band[:-1].isdigit():
        low = int(band[:-1]) // 20 * 20
        return f"{low}〜{low + 19}歳"
    return band


def coarse_month(value: str) -> str:
    """'2026-04' → '2026-Q2', '2026-Q2' → '2026' (date coarsening, one step per call)."""
    if len(value) == 7 and value[4] == "-" and value[5:].isdigit():
        return f"{value[:4]}-Q{(int(value[5:]) - 1) // 3 + 1}"
    if len(value) == 7 and value[4:6] == "-Q":
        return value[:4]
    return value


# Generalisation steps per quasi-identifier column of the released data set: each step replaces the value by
# a coarser one; the last step leaves nothing ("*").
GENERALISATION_STEPS: dict[str, tuple[Any, ...]] = {
    "age_band": (coarse_age_band, lambda v: "*"),
    "prefecture": (region_of, lambda v: "*"),
    "first_purchase_month": (coarse_month, coarse_month, lambda v: "*"),
    "gender": (lambda v: "*",),
}


@dataclasses.dataclass
class AnonymisationReport:
    """What the release looks like: the k asked for and achieved, the rows suppressed (removed), the
    generalisation level of each quasi-identifier, and the items (columns) released."""

    k_required: int
    k_achieved: int
    rows_in: int
    rows_released: int
    rows_suppressed: int
    unusual_removed: int
    levels: dict[str, int]
    items: list[str]

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _generalise(row: dict[str, Any], levels: Mapping[str, int]) -> dict[str, Any]:
    out = dict(row)
    for column, level in levels.items():
        for step in GENERALISATION_STEPS[column][:level]:
            out[column] = step(out[column])
    return out


def _key(row: Mapping[str, Any], quasi: Sequence[str]) -> tuple[Any, ...]:
    return tuple(row[c] for c in quasi)


def k_anonymise(
    rows: Iterable[Mapping[str, Any]],
    *,
    quasi: Sequence[str],
    k: int = 5,
    max_suppression: float = 0.05,
    unusual: Mapping[str, frozenset[Any]] | None = None,
) -> tuple[list[dict[str, Any]], AnonymisationReport]:
    """Generalise and suppress until every combination of the quasi-identifiers `quasi` has at least `k` rows.

    First unusual values (特異な記述, 規則34(iv): e.g. an age band of 90 and over) are removed with
    their rows.
    Then, from no generalisation, the quasi-identifier whose generalisation merges the most small classes is
    raised one step at a time until the rows in classes smaller than `k` are at most `max_suppression` of the
    rows; those rows are suppressed. Every released combination has at least `k` rows (or nothing is
    released). Columns not in `quasi` pass unchanged (the caller has dropped identifiers already).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    for column in quasi:
        if column not in GENERALISATION_STEPS:
            raise ValueError(f"no generalisation for {column}")
    unusual = unusual or {}
    all_rows = [dict(r) for r in rows]
    kept = [r for r in all_rows if not any(r.get(c) in values for c, values in unusual.items())]
    unusual_removed = len(all_rows) - len(kept)
    levels = dict.fromkeys(quasi, 0)

    def small_rows(candidate: Mapping[str, int]) -> int:
        counts = Counter(_key(_generalise(r, candidate), quasi) for r in kept)
        return sum(n for n in counts.values() if n < k)

    while small_rows(levels) > max_suppression * len(kept):
        options = [c for c in quasi if levels[c] < len(GENERALISATION_STEPS[c])]
        if not options:
            break  # fully generalised: suppression does the rest
        best = min(options, key=lambda c: (small_rows({**levels, c: levels[c] + 1}), c))
        levels[best] += 1

    generalised = [_generalise(r, levels) for r in kept]
    counts = Counter(_key(r, quasi) for r in generalised)
    released = [r for r in generalised if counts[_key(r, quasi)] >= k]
    released_counts = [n for n in counts.values() if n >= k]
    report = AnonymisationReport(
        k_required=k,
        k_achieved=min(released_counts) if released_counts else 0,
        rows_in=len(all_rows),
        rows_released=len(released),
        rows_suppressed=len(kept) - len(released),
        unusual_removed=unusual_removed,
        levels=levels,
        items=list(released[0].keys()) if released else [],
    )
    return released, report
