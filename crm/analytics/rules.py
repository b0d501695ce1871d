"""Pure rules of the analytics (no ORM): the named RFM segments, written once as a table that both the SQL
of a run (crm.analytics.services.segment_case) and Python (rfm_segment) read; the discount rate per period;
the fairness report's threshold.

The segment rule, on the scores brought to a 1–5 scale (score5 = ceil(score × 5 / bins), so it holds for
any number of bins). The first row that matches names the segment; every (R, F, M) matches one row.

| segment | R | F | M | reading |
|---|---|---|---|---|
| champions 優良顧客 | 4–5 | 4–5 | 4–5 | bought recently, often, and much |
| loyal ロイヤル顧客 | 3–5 | 4–5 | any | buy often, not lapsed |
| cannot_lose 失えない顧客 | 1–2 | 4–5 | 4–5 | used to buy often and much, gone quiet |
| at_risk 離反の恐れ | 1–2 | 3–5 | any | used to buy fairly often, gone quiet |
| new 新規顧客 | 4–5 | 1 | any | first purchase days only, recent |
| potential 育成候補 | 4–5 | 2–3 | any | recent, a few purchase days |
| need_attention 要注意 | 3 | 3 | any | middling on both |
| promising 有望顧客 | 3 | 1–2 | any | some time ago, few purchases |
| hibernating 休眠顧客 | 2 | 1–2 | any | long ago, few purchases |
| lost 離反顧客 | 1 | 1–2 | any | longest ago, few purchases |
"""

from __future__ import annotations

import math

# (segment code, R range, F range, M range) on the 1–5 scale, inclusive; first match wins.
SEGMENT_RULES: list[tuple[str, tuple[int, int], tuple[int, int], tuple[int, int]]] = [
    ("champions", (4, 5), (4, 5), (4, 5)),
    ("loyal", (3, 5), (4, 5), (1, 5)),
    ("cannot_lose", (1, 2), (4, 5), (4, 5)),
    ("at_risk", (1, 2), (3, 5), (1, 5)),
    ("new", (4, 5), (1, 1), (1, 5)),
    ("potential", (4, 5), (2, 3), (1, 5)),
    ("need_attention", (3, 3), (3, 3), (1, 5)),
    ("promising", (3, 3), (1, 2), (1, 5)),
    ("hibernating", (2, 2), (1, 2), (1, 5)),
    ("lost", (1, 1), (1, 2), (1, 5)),
]

DEFAULT_BINS = 5
MAX_BINS = 10


def to_five(score: int, bins: int) -> int:
    """A score of 1..bins on the 1–5 scale of the segment rule."""
    return min(5, max(1, math.ceil(score * 5 / bins)))


def rfm_segment(r: int, f: int, m: int, bins: int = DEFAULT_BINS) -> str:
    """The segment of scores (r, f, m), each 1..bins."""
    r5, f5, m5 = to_five(r, bins), to_five(f, bins), to_five(m, bins)
    for code, (r_lo, r_hi), (f_lo, f_hi), (m_lo, m_hi) in SEGMENT_RULES:
        if r_lo <= r5 <= r_hi and f_lo <= f5 <= f_hi and m_lo <= m5 <= m_hi:
            return code
    raise AssertionError("the segment table covers every score")  # pragma: no cover


def period_rate(annual_rate: float, time_unit: str) -> float:
    """The discount rate per period of an annual rate: (1 + annual)^(days per period / 365.25) − 1."""
    days = 7.0 if time_unit == "week" else 1.0
    return float((1.0 + annual_rate) ** (days / 365.25) - 1.0)


# Fairness report: a group whose mean score differs from the population's by more than this many of the
# population's standard deviations (a standardised mean difference, Cohen's d) is flagged; 0.2 is Cohen's
# "small effect". Groups smaller than FAIRNESS_MIN_GROUP are shown but not judged (too few to say).
FAIRNESS_SMD_THRESHOLD = 0.2
FAIRNESS_MIN_GROUP = 30


def standardised_difference(group_mean: float, overall_mean: float, overall_sd: float) -> float:
    """(group mean − overall mean) / overall standard deviation; 0 when everyone scores the same."""
    return 0.0 if not overall_sd else (group_mean - overall_mean) / overall_sd


def fairness_flag(smd: float, size: int) -> bool:
    """Whether a group's gap is large enough to flag (and the group large enough to judge)."""
    return size >= FAIRNESS_MIN_GROUP and abs(smd) > FAIRNESS_SMD_THRESHOLD
