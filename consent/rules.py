"""Pure rules about purposes, consent and requests (no ORM): which methods a purpose admits, the hash of a
text, and the legal clocks of a data-subject request (開示等請求)."""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from zoneinfo import ZoneInfo

JST = ZoneInfo("Asia/Tokyo")

# Categories where consent must be given in advance and expressly: 要配慮個人情報 (APPI Art. 20(2), never by
# opt-out, Art. 27(2) proviso) and provision to a third party abroad (APPI Art. 28(1), prior consent after
# the information of 規則17).
OPT_IN_ONLY_CATEGORIES = frozenset({"special_care", "cross_border_transfer"})

GRANT, WITHDRAW = "grant", "withdraw"
OPT_IN, OPT_OUT = "opt_in", "opt_out"


# Direct marketing (GDPR Art. 21(2)–(3)): an objection to it covers every purpose of these categories at
# once (profiling for marketing included) and can never be overridden.
DIRECT_MARKETING_CATEGORIES = frozenset({"marketing_email", "personalisation"})

CONSENT, CONTRACT, LEGAL_OBLIGATION, LEGITIMATE_INTEREST = (
    "consent",
    "contract",
    "legal_obligation",
    "legitimate_interest",
)
# What the person can do about a purpose, by its lawful basis (shown on the public page and by the API).
WITHDRAW_CONSENT, OBJECT, OBJECT_DIRECT_MARKETING, STOP_USE = (
    "withdraw_consent",
    "object",
    "object_direct_marketing",
    "stop_use",
)


BASIS_ARTICLE = {
    CONSENT: "GDPR 6(1)(a); APPI 18(1), 20(2), 27(1), 28(1)",
    CONTRACT: "GDPR 6(1)(b); APPI 17, 18",
    LEGAL_OBLIGATION: "GDPR 6(1)(c); APPI 18(3)(i)",
    LEGITIMATE_INTEREST: "GDPR 6(1)(f); APPI 17, 18",
}
RIGHT_ARTICLE = {
    WITHDRAW_CONSENT: "GDPR 7(3)",
    OBJECT: "GDPR 21(1)",
    OBJECT_DIRECT_MARKETING: "GDPR 21(2), 21(3)",
    STOP_USE: "APPI 35",
}


def is_direct_marketing(category: str) -> bool:
    """True when a purpose of this category is direct marketing (GDPR Art. 21(2))."""
    return category in DIRECT_MARKETING_CATEGORIES


def basis_weakened(old: str, new: str) -> bool:
    """True when a purpose leaves consent for another basis: the people who consented did so under the
    promise that withdrawing ends the use, which the new basis no longer keeps (a decision is required)."""
    return old == CONSENT and new != CONSENT


def person_rights(*, basis: str, category: str) -> list[str]:
    """What the person can do about a purpose of this basis and category, in display order.

    consent: withdraw (GDPR Art. 7(3)); legitimate interest: object (Art. 21(1)); direct marketing under any
    basis but a legal obligation: object to direct marketing (Art. 21(2)–(3)); every basis but a legal
    obligation: ask us to stop using (利用停止, APPI Art. 35). Data kept for a legal obligation is kept
    whatever the request (GDPR Art. 17(3)(b)), so nothing is offered there.
    """
    if basis == LEGAL_OBLIGATION:
        return []
    rights = []
    if basis == CONSENT:
        rights.append(WITHDRAW_CONSENT)
    if basis == LEGITIMATE_INTEREST:
        rights.append(OBJECT)
    if is_direct_marketing(category):
        rights.append(OBJECT_DIRECT_MARKETING)
    rights.append(STOP_USE)
    return rights


def opt_in_required(category: str) -> bool:
    """True when a grant for a purpose of this category is valid only as an express opt-in."""
    return category in OPT_IN_ONLY_CATEGORIES


def grant_method_error(*, category: str, action: str, method: str) -> str | None:
    """The Japanese reason a grant by `method` is not valid for `category`, or None when it is."""
    if action == GRANT and method == OPT_OUT and opt_in_required(category):
        if category == "special_care":
            return (
                "要配慮個人情報の取得にはあらかじめ本人の同意が必要です（法第20条第2項）。"
                "オプトアウトでは記録できません。"
            )
        return (
            "外国にある第三者への提供には本人の事前の同意が必要です（法第28条第1項）。"
            "オプトアウトでは記録できません。"
        )
    return None


def purpose_text_hash(
    *, title_ja: str, title_en: str, description_ja: str, description_en: str, legal_basis: str
) -> str:
    """SHA-256 over the canonical JSON of a purpose's wording: what a consent row proves was shown."""
    canonical = json.dumps(
        {
            "title_ja": title_ja.strip(),
            "title_en": title_en.strip(),
            "description_ja": description_ja.strip(),
            "description_en": description_en.strip(),
            "legal_basis": legal_basis,
        },
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def period_cutoff(as_of: dt.datetime, days: int) -> dt.datetime:
    """Start (00:00 JST) of the calendar day `days` days before the JST day of `as_of`: an event strictly
    before it has passed the N-day period (days counted from the next day, Civil Code Art. 140)."""
    if days < 0:
        raise ValueError("days must be >= 0")
    day = as_of.astimezone(JST).date() - dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time.min, tzinfo=JST)


# --- the clocks of a data-subject request (開示等請求) ----------------------------------------------

APPI_REQUEST_DAYS_DEFAULT = 14  # internal limit; the person may sue two weeks after the request (APPI 39)
GDPR_MONTHS = 1  # GDPR 12(3): within one month of receipt
GDPR_EXTENDED_MONTHS = 3  # ... extendable by two further months


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (a naive one has no day in Asia/Tokyo)")
    return value


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day number `months` later, or that month's last day when it has no such day
    (Jan 31 + 1 → Feb 28/29; Jan 31 + 3 → Apr 30): GDPR 12(3)'s "one month" as legal-rules.md §2 counts it."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class RequestDueDates:
    """The legal clocks of one request, as dates in Asia/Tokyo (each due at the end of its day).

    - `gdpr_due` — GDPR Art. 12(3): one month after the day of receipt;
    - `gdpr_extended_due` — GDPR Art. 12(3): two further months, only with a reason and a notice to the person
      within the first month (`extension_notice_is_timely`);
    - `appi_due` — APPI Arts. 33–35 ("遅滞なく"), the internal limit: `appi_days` calendar days counted from
      the day after receipt (Civil Code Art. 140); the person may sue two weeks after the request
      (APPI Art. 39).
    No date is moved off a weekend or holiday (the conservative reading).
    """

    received_on: dt.date
    gdpr_due: dt.date
    gdpr_extended_due: dt.date
    appi_due: dt.date


def request_due_dates(
    received_at: dt.datetime, *, appi_days: int = APPI_REQUEST_DAYS_DEFAULT
) -> RequestDueDates:
    """The due dates of a request received at `received_at` (any aware datetime; its day is taken in JST)."""
    if appi_days < 1:
        raise ValueError("appi_days must be at least 1")
    received_on = _aware(received_at, "received_at").astimezone(JST).date()
    return RequestDueDates(
        received_on=received_on,
        gdpr_due=add_months(received_on, GDPR_MONTHS),
        gdpr_extended_due=add_months(received_on, GDPR_EXTENDED_MONTHS),
        appi_due=received_on + dt.timedelta(days=appi_days),
    )


# How long an answered request and its records (verification, messages, completion record, package rows) are
# kept after it was completed or rejected: the REQUEST_RECORDS_KEEP_YEARS setting (README, "Keeping the
# desk's own records": the civil-law limitation period of a claim about how the request was handled).
REQUEST_RECORDS_KEEP_YEARS_DEFAULT = 3


def request_records_keep_until(closed_at: dt.datetime, *, years: int) -> dt.date:
    """The last day (JST) an answered request's records are kept: `years` years after the JST day it was
    completed or rejected (29 February → 28 February of a common year, as add_months counts)."""
    return add_months(_aware(closed_at, "closed_at").astimezone(JST).date(), 12 * years)


def request_records_closed_before(day: dt.date, *, years: int) -> dt.datetime:
    """The instant (00:00 JST) such that a request closed before it was kept through a day before `day`
    (request_records_keep_until(closed_at) < day), and one closed at or after it is still kept on `day`:
    the cutoff of the retention policy's statement."""
    first = add_months(day, -12 * years)
    if add_months(first, 12 * years) < day:  # `day` is 29 February: 28 February + N years falls short of it
        first += dt.timedelta(days=1)
    return dt.datetime.combine(first, dt.time.min, tzinfo=JST)


def extension_notice_is_timely(dates: RequestDueDates, notice_sent_at: dt.datetime) -> bool:
    """Whether a notice of extension sent at `notice_sent_at` was sent within the first month (GDPR 12(3)):
    on or before the original due date, in JST. A later notice cannot extend the deadline."""
    return _aware(notice_sent_at, "notice_sent_at").astimezone(JST).date() <= dates.gdpr_due


def gdpr_effective_due(
    dates: RequestDueDates, *, extension_reason: str = "", extension_notice_sent_at: dt.datetime | None = None
) -> dt.date:
    """The GDPR date that binds: the extended one only with a reason and a timely notice, else the
    original."""
    if (
        extension_reason.strip()
        and extension_notice_sent_at is not None
        and extension_notice_is_timely(dates, extension_notice_sent_at)
    ):
        return dates.gdpr_extended_due
    return dates.gdpr_due


def evidence_hash(key: bytes, *, source_ip: str, user_agent: str, visitor_id: str) -> str:
    """Keyed hash (HMAC-SHA256, hex) of a ledger row's personal evidence, kept when erasure clears it.

    Whoever holds the key and the original evidence (a web server's log, the person's own claim) can show
    it matches the row; the row alone no longer tells the address, the browser or the cookie id.
    """
    canonical = json.dumps(
        {"source_ip": source_ip, "user_agent": user_agent, "visitor_id": visitor_id},
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()
