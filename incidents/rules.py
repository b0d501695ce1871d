"""Pure rules of breach response (漏えい等): reportability and the reporting clocks (no ORM).

legal-rules.md §1, implemented exactly so and only here:

- APPI Art. 26(1), 規則7: reportable to the PPC when (1) 要配慮個人情報 is involved, (2) there is a risk of
  financial damage, (3) an unlawful purpose is suspected, or (4) more than 1,000 people are affected — a
  likelihood (おそれ) is enough, and (1)–(3) apply for a single person — unless the data was strongly
  encrypted (高度な暗号化) or only 仮名加工情報 (APPI Art. 41(9) disapplies Art. 26).
- 規則8(1) 速報 "速やかに": target three days, limit five days after becoming aware.
- 規則8(2) 確報: 30 days, or 60 days whenever trigger (3) applies (even with others); days counted from the
  next day (Civil Code Art. 140), due at the end of that day in JST (23:59:59), no weekend roll-forward.
- GDPR Art. 33(1): the supervisory authority within 72 hours of becoming aware (an exact timestamp; the
  hours are real elapsed hours, so a daylight-saving change in the EU does not move it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

JST = ZoneInfo("Asia/Tokyo")

AFFECTED_THRESHOLD = 1000  # 規則7(4): "1,000人を超える"
PRELIM_TARGET_DAYS = 3
PRELIM_LIMIT_DAYS = 5
FINAL_DAYS = 30
FINAL_DAYS_UNLAWFUL = 60
GDPR_SA_HOURS = 72
END_OF_DAY = dt.time(23, 59, 59)


@dataclass(frozen=True)
class BreachClocks:
    """Whether the PPC must be told, which triggers apply, and every deadline as an aware datetime in JST.

    The APPI deadlines are computed whether or not the case is reportable (the page shows them only when it
    is); `appi_triggers` names the 規則7 items that apply, `appi_exemption` why a triggered case is not
    reportable ("encrypted", "pseudonymised"), or "".
    """

    aware_at: dt.datetime
    appi_reportable: bool
    appi_triggers: tuple[str, ...]
    appi_exemption: str
    appi_prelim_target: dt.datetime
    appi_prelim_limit: dt.datetime
    appi_final_due: dt.datetime
    appi_final_days: int
    gdpr_sa_due: dt.datetime


def _after(moment: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    """`moment + delta` in elapsed time, in JST (through UTC: adding to a zoned datetime adds wall time)."""
    return (moment.astimezone(dt.UTC) + delta).astimezone(JST)


def breach_clocks(
    aware_at: dt.datetime,
    *,
    special_care: bool = False,
    financial_damage: bool = False,
    unlawful_purpose: bool = False,
    affected: int = 0,
    encrypted: bool = False,
    pseudonymised_only: bool = False,
) -> BreachClocks:
    """The clocks of an incident the company became aware of at `aware_at` (any aware datetime)."""
    if aware_at.tzinfo is None or aware_at.utcoffset() is None:
        raise ValueError("aware_at must be an aware datetime")
    if affected < 0:
        raise ValueError("affected must be >= 0")
    triggers = tuple(
        name
        for name, applies in (
            ("special_care", special_care),  # 規則7(1)
            ("financial_damage", financial_damage),  # 規則7(2)
            ("unlawful_purpose", unlawful_purpose),  # 規則7(3)
            ("over_1000", affected > AFFECTED_THRESHOLD),  # 規則7(4)
        )
        if applies
    )
    exemption = ""
    if triggers and pseudonymised_only:
        exemption = "pseudonymised"  # APPI 41(9)
    elif triggers and encrypted:
        exemption = "encrypted"  # 規則7 (高度な暗号化その他の個人の権利利益を保護するために必要な措置)
    final_days = FINAL_DAYS_UNLAWFUL if unlawful_purpose else FINAL_DAYS
    aware_day = aware_at.astimezone(JST).date()
    return BreachClocks(
        aware_at=aware_at.astimezone(JST),
        appi_reportable=bool(triggers) and not exemption,
        appi_triggers=triggers,
        appi_exemption=exemption,
        appi_prelim_target=_after(aware_at, dt.timedelta(days=PRELIM_TARGET_DAYS)),
        appi_prelim_limit=_after(aware_at, dt.timedelta(days=PRELIM_LIMIT_DAYS)),
        appi_final_due=dt.datetime.combine(aware_day + dt.timedelta(days=final_days), END_OF_DAY, tzinfo=JST),
        appi_final_days=final_days,
        gdpr_sa_due=_after(aware_at, dt.timedelta(hours=GDPR_SA_HOURS)),
    )


DRILL_INTERVAL_MONTHS = 12


def drill_overdue(last_drill: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether twelve months have passed since the last drill (or there was none): the drill's day in JST plus
    twelve calendar months (29 February → 28 February), overdue from the day after."""
    if last_drill is None:
        return True
    day = last_drill.astimezone(JST).date()
    try:
        anniversary = day.replace(year=day.year + DRILL_INTERVAL_MONTHS // 12)
    except ValueError:  # 29 February in a year without one
        anniversary = day.replace(year=day.year + 1, day=28)
    return now.astimezone(JST).date() > anniversary
