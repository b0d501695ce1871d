"""Input types shared by the API routers: text PostgreSQL can store, JSON objects of bounded size and depth,
and strict scalars.

django-ninja validates the parsed body in pydantic's Python mode, where lax mode turns 1733000000 into a
datetime and true into 1, and strict mode would refuse every string for a datetime. So each type says exactly
what JSON it takes: integers that are JSON integers (StrictInt), booleans that are JSON booleans (StrictBool),
timestamps and dates only as RFC 3339 text (checked before pydantic parses them), prefectures as one of the
47 JIS X 0401 codes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from annotated_types import GroupedMetadata
from django.utils import timezone
from django.utils.translation import gettext as _
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from crm.prefectures import PREFECTURE_CODES
from crm.validators import strings_in

MAX_PROPERTIES_BYTES = 4096
# Levels of objects/arrays in a free-form JSON field ({"a": 1} is one). The walks below (My Number scan,
# number check) recurse; without a bound a 3 KB body reached Python's recursion limit (a 500).
MAX_JSON_DEPTH = 8

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_PROPERTIES_BYTES",
    "BirthDate",
    "JsonObject",
    "Moment",
    "Prefecture",
    "Text",
]


def _storable(value: str) -> str:
    # PostgreSQL refuses NUL in text and jsonb, and a lone surrogate cannot be encoded: refuse both here
    # (422) instead of letting the database raise a 500.
    if "\x00" in value:
        raise ValueError(_("NUL文字は使えません。"))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(_("UTF-8で表せない文字が含まれています。")) from exc
    return value


@dataclass(frozen=True)
class TextLimit(GroupedMetadata):
    """`Annotated[str, TextLimit(n)]`: a str of at most `n` characters that PostgreSQL can store.

    Metadata rather than a function returning the Annotated type, so that mypy reads the annotation
    (pydantic unpacks grouped metadata exactly as if the two constraints were written out)."""

    max_length: int
    min_length: int = 0

    def __iter__(self) -> Iterator[object]:
        yield StringConstraints(max_length=self.max_length, min_length=self.min_length)
        yield AfterValidator(_storable)


def Text(max_length: int, min_length: int = 0) -> Any:
    """The same type built at run time; mypy cannot read it in an annotation, prefer `TextLimit`."""
    return Annotated[str, TextLimit(max_length, min_length)]


def _numbers_in(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers_in(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers_in(v)]
    return []


def _within_depth(value: Any, limit: int) -> bool:
    """Whether `value` nests at most `limit` levels of objects/arrays (iterative: no recursion to exhaust)."""
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        children = item.values() if isinstance(item, dict) else item
        if level > limit:
            return False
        pending.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return True


def _storable_json(value: dict[str, Any]) -> dict[str, Any]:
    if not _within_depth(value, MAX_JSON_DEPTH):
        raise ValueError(_("入れ子は%(n)s段までにしてください。") % {"n": MAX_JSON_DEPTH})
    for text in strings_in(value):
        _storable(text)
    if any(not math.isfinite(n) for n in _numbers_in(value)):
        # json.loads accepts NaN/Infinity, PostgreSQL's jsonb does not.
        raise ValueError(_("数値に NaN や Infinity は使えません。"))
    if (
        len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "replace"))
        > MAX_PROPERTIES_BYTES
    ):
        raise ValueError(_("属性は%(n)sバイト以内にしてください。") % {"n": MAX_PROPERTIES_BYTES})
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_storable_json)]


EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
FUTURE_TOLERANCE = dt.timedelta(days=1)


def _plausible_moment(value: dt.datetime) -> dt.datetime:
    # 0001-01-01T00:00+14:00 is valid ISO 8601 but not representable in UTC: refuse it here instead of
    # letting a later conversion (the audit diff, the database) raise a 500.
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:
        utc = None
    if utc is None or utc < EARLIEST or utc > timezone.now() + FUTURE_TOLERANCE:
        raise ValueError(_("日時は1900年以降、現在から1日以内の範囲で指定してください。"))
    return value


# RFC 3339 section 5.6 date-time (full-date "T" full-time, the offset required); pydantic parses what passes.
_RFC3339_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_RFC3339_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _rfc3339_date_time(value: Any) -> Any:
    # pydantic (lax) would also take 1733000000, "1733000000", "2026-04-01 10:00" and true-ish forms.
    if not isinstance(value, str) or not _RFC3339_DATE_TIME.fullmatch(value):
        raise ValueError(
            _("日時は RFC 3339 形式の文字列で指定してください（例: 2026-04-01T10:00:00+09:00）。")
        )
    return value


def _rfc3339_full_date(value: Any) -> Any:
    # pydantic (lax) would also take a datetime at midnight ("2000-01-01T00:00:00") and a Unix time.
    if not isinstance(value, str) or not _RFC3339_FULL_DATE.fullmatch(value):
        raise ValueError(_("日付（YYYY-MM-DD）で指定してください。"))
    return value


def _plausible_birth_date(value: dt.date) -> dt.date:
    if value < EARLIEST.date() or value > timezone.localdate():
        raise ValueError(_("生年月日は1900年1月1日から今日までの日付で指定してください。"))
    return value


Moment = Annotated[AwareDatetime, BeforeValidator(_rfc3339_date_time), AfterValidator(_plausible_moment)]
BirthDate = Annotated[dt.date, BeforeValidator(_rfc3339_full_date), AfterValidator(_plausible_birth_date)]


def _prefecture(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # One message instead of pydantic's list of all 48 allowed values.
    try:
        return handler(value)
    except ValueError as exc:
        raise ValueError(_("都道府県は JIS X 0401 のコード（01〜47）で指定してください。")) from exc


# "" clears the field; otherwise one of the 47 codes, as Customer.prefecture holds them (crm/prefectures.py).
if TYPE_CHECKING:  # a Literal built from a dict at run time is not a static type: mypy sees its base, str
    PrefectureCode: TypeAlias = str
else:
    PrefectureCode = Literal[("", *PREFECTURE_CODES.values())]
Prefecture = Annotated[PrefectureCode, WrapValidator(_prefecture)]
