"""Pure computations of the retention engine (no ORM): trigger dates, generalisation, id-range slicing.

Days are counted in Asia/Tokyo calendar days (legal-rules.md: "All dates are computed in Asia/Tokyo"): a
record is past an N-day period when its timestamp falls before the start (00:00 JST) of the day N days before
the day of `as_of`. Example: N = 30, as_of 2026-05-01 10:00 JST → cutoff 2026-04-01 00:00 JST; a record of
2026-03-31 23:59 JST is past the period, one of 2026-04-01 00:00 JST is not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from crm.prefectures import PREFECTURE_CODES, PREFECTURES  # noqa: F401  (PREFECTURES re-exported)

JST = ZoneInfo("Asia/Tokyo")

# Ages from this one up are one band: a rare age is an unusual description (特異な記述, 規則34) that could
# single a person out after anonymisation.
TOP_AGE_BAND = 90


def trigger_cutoff(as_of: dt.datetime, days: int) -> dt.datetime:
    """Start (00:00 JST) of the calendar day `days` days before the JST day of `as_of`.

    A timestamp strictly before the cutoff has passed the N-day period.
    """
    if days < 0:
        raise ValueError("days must be >= 0")
    day = as_of.astimezone(JST).date() - dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time.min, tzinfo=JST)


def age_on(birth_date: dt.date, on: dt.date) -> int:
    """Full years of age on `on` (a birthday counts on its own date; 29 February on 1 March otherwise)."""
    years = on.year - birth_date.year
    if (on.month, on.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def age_band(birth_date: dt.date | None, on: dt.date) -> str:
    """Ten-year band of the age on `on`: '30代'; '90歳以上' from TOP_AGE_BAND; '' when unknown/implausible."""
    if birth_date is None:
        return ""
    age = age_on(birth_date, on)
    if age < 0:
        return ""
    if age >= TOP_AGE_BAND:
        return f"{TOP_AGE_BAND}歳以上"
    if age < 10:
        return "10歳未満"
    return f"{age // 10 * 10}代"


def prefecture_of(address: str, known_code: str = "") -> str:
    """The JIS prefecture code to keep after anonymisation: the one already recorded, else the first
    prefecture named in the address, else '' (a municipality alone is not generalised by guesswork)."""
    if known_code:
        return known_code
    text = (address or "").strip()
    for name, code in PREFECTURE_CODES.items():
        if text.startswith(name):
            return code
    # "東京都" is often written without 都 etc.; accept the stem only at the very start.
    for name, code in PREFECTURE_CODES.items():
        stem = name if name == "北海道" else name[:-1]
        if text.startswith(stem):
            return code
    return ""


# Generalisers named by the registry's declarations (crm.classification.Generalisation.by): each maps the
# value being cleared, the value its target field holds now and the JST day of the action to the value the
# target keeps ('' when nothing can be said).
Generaliser = Callable[[Any, Any, dt.date], str]
GENERALISERS: dict[str, Generaliser] = {
    "age_band": lambda value, kept, on: age_band(value, on),
    "prefecture": lambda value, kept, on: prefecture_of(value or "", kept or ""),
}


def id_slices(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """Split the id range (lo, hi] into at most `parts` contiguous, non-empty half-open ranges."""
    if hi <= lo:
        return []
    parts = max(1, min(parts, hi - lo))
    step = -(-(hi - lo) // parts)
    out = []
    start = lo
    while start < hi:
        end = min(start + step, hi)
        out.append((start, end))
        start = end
    return out


def subject_hash(key: bytes, customer_id: int) -> str:
    """Keyed hash naming a customer in a tombstone without naming the person."""
    return hmac.new(key, f"customer:{customer_id}".encode(), hashlib.sha256).hexdigest()
