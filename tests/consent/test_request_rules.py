"""The legal clocks of a data-subject request (開示等請求), on worked examples with real dates
(legal-rules.md §2: GDPR 12(3) one month, same day number or the month's last day; APPI internal limit of
14 calendar days from receipt; all dates in Asia/Tokyo; no weekend roll-forward)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from consent.rules import (
    add_months,
    extension_notice_is_timely,
    gdpr_effective_due,
    request_due_dates,
)

JST = ZoneInfo("Asia/Tokyo")
UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")


def jst(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=JST)


@pytest.mark.parametrize(
    ("received", "gdpr", "extended", "appi"),
    [
        # an ordinary mid-month day
        (jst(2026, 4, 15, 10, 0), dt.date(2026, 5, 15), dt.date(2026, 7, 15), dt.date(2026, 4, 29)),
        # January 31st: February has no 31st (2026 is not a leap year), April has no 31st
        (jst(2026, 1, 31, 9, 0), dt.date(2026, 2, 28), dt.date(2026, 4, 30), dt.date(2026, 2, 14)),
        # the same in a leap year: February 29th
        (jst(2028, 1, 31, 9, 0), dt.date(2028, 2, 29), dt.date(2028, 4, 30), dt.date(2028, 2, 14)),
        # January 30th of a leap year: 29 Feb, and 30 Apr exists
        (jst(2028, 1, 30, 9, 0), dt.date(2028, 2, 29), dt.date(2028, 4, 30), dt.date(2028, 2, 13)),
        # August 31st: September has 30 days; November 30
        (jst(2026, 8, 31, 12, 0), dt.date(2026, 9, 30), dt.date(2026, 11, 30), dt.date(2026, 9, 14)),
        # across the year: November 30th → December 30th, February 28th (2027) for three months
        (jst(2026, 11, 30, 12, 0), dt.date(2026, 12, 30), dt.date(2027, 2, 28), dt.date(2026, 12, 14)),
        # December 31st → January 31st, March 31st of the next year
        (jst(2026, 12, 31, 23, 0), dt.date(2027, 1, 31), dt.date(2027, 3, 31), dt.date(2027, 1, 14)),
        # a due date on a Sunday is not moved (2026-05-17 is a Sunday)
        (jst(2026, 4, 17, 10, 0), dt.date(2026, 5, 17), dt.date(2026, 7, 17), dt.date(2026, 5, 1)),
    ],
)
def test_worked_examples(received, gdpr, extended, appi):
    # when the clocks of a request received at `received` are computed
    dates = request_due_dates(received)
    # then each date is as legal-rules.md §2 counts it
    assert (dates.gdpr_due, dates.gdpr_extended_due, dates.appi_due) == (gdpr, extended, appi)
    assert dates.received_on == received.date()


def test_late_evening_jst_is_the_next_day_in_utc_and_counts_as_the_jst_day():
    # given a request that reached us at 23:30 JST on 31 March, which is 14:30 UTC the same day...
    late_jst = jst(2026, 3, 31, 23, 30)
    # ... and one at 00:30 JST on 1 April, which is still 31 March (15:30) in UTC
    just_after_midnight = dt.datetime(2026, 3, 31, 15, 30, tzinfo=UTC)
    # when both are given (one in UTC)
    first, second = request_due_dates(late_jst), request_due_dates(just_after_midnight)
    # then the day of receipt is the JST day: 31 March for the first (→ 30 April), 1 April for the second
    assert first.received_on == dt.date(2026, 3, 31)
    assert first.gdpr_due == dt.date(2026, 4, 30)
    assert first.appi_due == dt.date(2026, 4, 14)
    assert second.received_on == dt.date(2026, 4, 1)
    assert second.gdpr_due == dt.date(2026, 5, 1)
    assert second.appi_due == dt.date(2026, 4, 15)


def test_a_time_given_in_another_zone_is_read_in_tokyo():
    # given 20:00 in Berlin on 30 June (summer time, UTC+2) = 03:00 JST on 1 July
    received = dt.datetime(2026, 6, 30, 20, 0, tzinfo=BERLIN)
    # then the request was received on 1 July in Tokyo
    dates = request_due_dates(received)
    assert dates.received_on == dt.date(2026, 7, 1)
    assert dates.gdpr_due == dt.date(2026, 8, 1)


def test_the_appi_limit_is_a_setting():
    received = jst(2026, 4, 1, 10, 0)
    assert request_due_dates(received).appi_due == dt.date(2026, 4, 15)
    assert request_due_dates(received, appi_days=10).appi_due == dt.date(2026, 4, 11)
    assert request_due_dates(received, appi_days=30).appi_due == dt.date(2026, 5, 1)
    with pytest.raises(ValueError):
        request_due_dates(received, appi_days=0)


def test_a_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="aware"):
        request_due_dates(dt.datetime(2026, 4, 1, 10, 0))


def test_extension_with_a_timely_notice_and_a_reason_moves_the_date():
    # given a request of 31 January 2026 (due 28 February, extended due 30 April)
    dates = request_due_dates(jst(2026, 1, 31, 10, 0))
    # when the person was told on the last day of the first month (late evening JST), with a reason
    notice = jst(2026, 2, 28, 23, 0)
    # then the extension holds
    assert extension_notice_is_timely(dates, notice)
    assert gdpr_effective_due(
        dates, extension_reason="多数の請求が重なったため", extension_notice_sent_at=notice
    ) == dt.date(2026, 4, 30)


def test_extension_without_a_timely_notice_or_a_reason_does_not():
    dates = request_due_dates(jst(2026, 1, 31, 10, 0))
    # a notice one day late (1 March JST, though still 28 February in UTC)
    late = dt.datetime(2026, 2, 28, 15, 30, tzinfo=UTC)
    assert not extension_notice_is_timely(dates, late)
    assert gdpr_effective_due(dates, extension_reason="理由", extension_notice_sent_at=late) == dt.date(
        2026, 2, 28
    )
    # a timely notice without a reason
    timely = jst(2026, 2, 10, 10, 0)
    assert gdpr_effective_due(dates, extension_reason="  ", extension_notice_sent_at=timely) == dt.date(
        2026, 2, 28
    )
    # a reason with no notice
    assert gdpr_effective_due(dates, extension_reason="理由") == dt.date(2026, 2, 28)


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (dt.date(2026, 1, 31), 1, dt.date(2026, 2, 28)),
        (dt.date(2024, 1, 31), 1, dt.date(2024, 2, 29)),
        (dt.date(2026, 1, 31), 3, dt.date(2026, 4, 30)),
        (dt.date(2026, 3, 31), 1, dt.date(2026, 4, 30)),
        (dt.date(2026, 5, 31), 1, dt.date(2026, 6, 30)),
        (dt.date(2026, 10, 31), 3, dt.date(2027, 1, 31)),
        (dt.date(2026, 12, 15), 1, dt.date(2027, 1, 15)),
        (dt.date(2026, 2, 28), 1, dt.date(2026, 3, 28)),
    ],
)
def test_add_months(day, months, expected):
    assert add_months(day, months) == expected
