"""Input types shared by the API routers: text PostgreSQL can store, JSON objects of bounded size."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Annotated, Any

from django.utils import timezone
from django.utils.translation import gettext as _
from pydantic import AfterValidator, AwareDatetime, StringConstraints

from crm.validators import strings_in

MAX_PROPERTIES_BYTES = 4096


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


def Text(max_length: int, min_length: int = 0) -> Any:
    """A str of at most `max_length` characters that PostgreSQL can store."""
    return Annotated[
        str, StringConstraints(max_length=max_length, min_length=min_length), AfterValidator(_storable)
    ]


def _numbers_in(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers_in(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers_in(v)]
    return []


def _storable_json(value: dict[str, Any]) -> dict[str, Any]:
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


def _plausible_birth_date(value: dt.date) -> dt.date:
    if value < EARLIEST.date() or value > timezone.localdate():
        raise ValueError(_("生年月日は1900年1月1日から今日までの日付で指定してください。"))
    return value


Moment = Annotated[AwareDatetime, AfterValidator(_plausible_moment)]
BirthDate = Annotated[dt.date, AfterValidator(_plausible_birth_date)]
