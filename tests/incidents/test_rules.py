"""Reportability and the breach clocks (legal-rules.md §1: APPI 26, 規則7–8; GDPR 33), on worked examples."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from incidents.rules import breach_clocks

JST = ZoneInfo("Asia/Tokyo")
BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.UTC


def jst(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=JST)


AWARE = jst(2026, 4, 1, 10, 0)

# --- reportability: each trigger, each exemption, their mixes -------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reportable", "triggers"),
    [
        ({}, False, ()),
        ({"affected": 1}, False, ()),
        ({"affected": 1000}, False, ()),  # "more than 1,000": 1,000 is not enough
        ({"affected": 1001}, True, ("over_1000",)),
        ({"special_care": True, "affected": 1}, True, ("special_care",)),
        ({"financial_damage": True, "affected": 1}, True, ("financial_damage",)),
        ({"unlawful_purpose": True, "affected": 1}, True, ("unlawful_purpose",)),
        (
            {"special_care": True, "unlawful_purpose": True, "affected": 5000},
            True,
            ("special_care", "unlawful_purpose", "over_1000"),
        ),
    ],
)
def test_each_trigger_makes_it_reportable(kwargs, reportable, triggers):
    clocks = breach_clocks(AWARE, **kwargs)
    assert clocks.appi_reportable is reportable
    assert clocks.appi_triggers == triggers
    assert clocks.appi_exemption == ""


@pytest.mark.parametrize(
    ("kwargs", "exemption"),
    [
        ({"special_care": True, "encrypted": True}, "encrypted"),
        ({"affected": 50_000, "encrypted": True}, "encrypted"),
        ({"unlawful_purpose": True, "pseudonymised_only": True}, "pseudonymised"),
        ({"financial_damage": True, "encrypted": True, "pseudonymised_only": True}, "pseudonymised"),
    ],
)
def test_strong_encryption_and_pseudonymised_data_exempt(kwargs, exemption):
    clocks = breach_clocks(AWARE, **kwargs)
    assert clocks.appi_reportable is False
    assert clocks.appi_exemption == exemption
    assert clocks.appi_triggers  # the triggers are still named: the page says why it is not reportable


def test_an_exemption_without_a_trigger_names_nothing():
    clocks = breach_clocks(AWARE, encrypted=True, affected=3)
    assert (clocks.appi_reportable, clocks.appi_exemption, clocks.appi_triggers) == (False, "", ())


# --- the clocks ---------------------------------------------------------------------------------------


def test_the_legal_rules_worked_example():
    # aware 2026-04-01 10:00 JST → final report 2026-05-01 23:59:59 (30) / 2026-05-31 23:59:59 (60)
    assert breach_clocks(AWARE, affected=2000).appi_final_due == jst(2026, 5, 1, 23, 59, 59)
    assert breach_clocks(AWARE, unlawful_purpose=True).appi_final_due == jst(2026, 5, 31, 23, 59, 59)


def test_preliminary_target_and_limit_and_the_72_hours():
    clocks = breach_clocks(AWARE, special_care=True)
    assert clocks.appi_prelim_target == jst(2026, 4, 4, 10, 0)
    assert clocks.appi_prelim_limit == jst(2026, 4, 6, 10, 0)
    assert clocks.gdpr_sa_due == jst(2026, 4, 4, 10, 0)
    assert clocks.appi_final_days == 30


def test_late_evening_jst_counts_from_that_day():
    # 23:50 JST on 31 March (14:50 UTC): the day of awareness is 31 March → 30 April end of day
    clocks = breach_clocks(jst(2026, 3, 31, 23, 50), affected=1500)
    assert clocks.appi_final_due == jst(2026, 4, 30, 23, 59, 59)
    assert clocks.gdpr_sa_due == jst(2026, 4, 3, 23, 50)


def test_just_after_midnight_jst_given_in_utc_is_the_next_jst_day():
    # 15:05 UTC on 31 March = 00:05 JST on 1 April: day of awareness 1 April → 1 May
    clocks = breach_clocks(dt.datetime(2026, 3, 31, 15, 5, tzinfo=UTC), affected=1500)
    assert clocks.appi_final_due == jst(2026, 5, 1, 23, 59, 59)
    assert clocks.aware_at == jst(2026, 4, 1, 0, 5)


def test_month_ends_do_not_roll_and_weekends_are_not_skipped():
    # aware 31 January 2026 → +30 days = 2 March 2026 (February has 28 days)
    assert breach_clocks(jst(2026, 1, 31, 12, 0), special_care=True).appi_final_due == jst(
        2026, 3, 2, 23, 59, 59
    )
    # aware 30 December 2027 → +60 = 28 February 2028 (a Monday); leap year: 29 Feb is not reached
    assert breach_clocks(jst(2027, 12, 30, 9, 0), unlawful_purpose=True).appi_final_due == jst(
        2028, 2, 28, 23, 59, 59
    )
    # aware 2 April 2026 → +30 = 2 May 2026, a Saturday (Golden Week): not moved
    due = breach_clocks(jst(2026, 4, 2, 9, 0), affected=1001).appi_final_due
    assert due == jst(2026, 5, 2, 23, 59, 59)
    assert due.weekday() == 5


def test_sixty_days_whenever_unlawful_purpose_applies_even_with_other_triggers():
    clocks = breach_clocks(
        AWARE, special_care=True, financial_damage=True, unlawful_purpose=True, affected=9999
    )
    assert clocks.appi_final_days == 60
    assert clocks.appi_final_due == jst(2026, 5, 31, 23, 59, 59)
    # and without it, with every other trigger, thirty
    assert breach_clocks(AWARE, special_care=True, financial_damage=True, affected=9999).appi_final_days == 30


def test_72_hours_across_the_eu_daylight_saving_change_are_real_hours():
    # aware 10:00 in Berlin on Saturday 28 March 2026 (CET, UTC+1); clocks go forward on Sunday 29 March
    aware = dt.datetime(2026, 3, 28, 10, 0, tzinfo=BERLIN)
    due = breach_clocks(aware).gdpr_sa_due
    # then the due time is 72 elapsed hours later: 09:00 UTC on 31 March = 11:00 CEST (not 10:00)
    assert due - aware == dt.timedelta(hours=72)
    assert due.astimezone(UTC) == dt.datetime(2026, 3, 31, 9, 0, tzinfo=UTC)
    assert due.astimezone(BERLIN).hour == 11
    # and back in autumn (25 October 2026): 10:00 CEST + 72 h = 09:00 CET
    autumn = breach_clocks(dt.datetime(2026, 10, 24, 10, 0, tzinfo=BERLIN)).gdpr_sa_due
    assert autumn.astimezone(BERLIN) == dt.datetime(2026, 10, 27, 9, 0, tzinfo=BERLIN)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        breach_clocks(dt.datetime(2026, 4, 1, 10, 0))  # naive
    with pytest.raises(ValueError):
        breach_clocks(AWARE, affected=-1)
