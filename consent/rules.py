"""Pure rules about purposes and consent (no ORM): which methods a purpose admits, the hash of a text."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from zoneinfo import ZoneInfo

JST = ZoneInfo("Asia/Tokyo")

# Categories where consent must be given in advance and expressly: 要配慮個人情報 (APPI Art. 20(2), never by
# opt-out, Art. 27(2) proviso) and provision to a third party abroad (APPI Art. 28(1), prior consent after
# the information of 規則17).
OPT_IN_ONLY_CATEGORIES = frozenset({"special_care", "cross_border_transfer"})

GRANT, WITHDRAW = "grant", "withdraw"
OPT_IN, OPT_OUT = "opt_in", "opt_out"


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
