"""Pure date maths and generalisation of the retention engine, on worked examples."""

import datetime as dt

import pytest

from crm.retention import rules
from tests.crm.retention.conftest import jst


def test_cutoff_counts_whole_jst_days():
    # given a run on 2026-05-01 10:00 JST and a 30-day period
    as_of = jst(2026, 5, 1, 10)
    # when the cutoff is computed
    cutoff = rules.trigger_cutoff(as_of, 30)
    # then it is the start of 2026-04-01 in Tokyo
    assert cutoff == jst(2026, 4, 1, 0, 0)
    assert jst(2026, 3, 31, 23, 59) < cutoff <= jst(2026, 4, 1, 0, 0)


def test_cutoff_uses_the_tokyo_day_of_a_utc_instant():
    # given 2026-04-30 16:00 UTC, which is already 2026-05-01 01:00 in Tokyo
    as_of = dt.datetime(2026, 4, 30, 16, 0, tzinfo=dt.UTC)
    # then the Tokyo day decides
    assert rules.trigger_cutoff(as_of, 30) == jst(2026, 4, 1)


def test_three_years_inactive_example():
    # given the default policy (1,095 days) evaluated on 2026-11-26 12:00 JST
    cutoff = rules.trigger_cutoff(jst(2026, 11, 26, 12), 3 * 365)
    # then activity before 2023-11-27 00:00 JST is past the period
    assert cutoff == jst(2023, 11, 27)


def test_negative_days_are_refused():
    with pytest.raises(ValueError):
        rules.trigger_cutoff(jst(2026, 1, 1), -1)


@pytest.mark.parametrize(
    ("birth", "on", "band"),
    [
        (dt.date(1990, 5, 2), dt.date(2026, 5, 1), "30代"),  # 35 the day before the birthday
        (dt.date(1986, 5, 1), dt.date(2026, 5, 1), "40代"),  # 40 on the birthday itself
        (dt.date(2000, 2, 29), dt.date(2026, 2, 28), "20代"),
        (dt.date(1930, 1, 1), dt.date(2026, 5, 1), "90歳以上"),  # a rare age is not kept as such
        (dt.date(2020, 1, 1), dt.date(2026, 5, 1), "10歳未満"),
        (None, dt.date(2026, 5, 1), ""),
        (dt.date(2030, 1, 1), dt.date(2026, 5, 1), ""),
    ],
)
def test_age_band(birth, on, band):
    assert rules.age_band(birth, on) == band


def test_age_on_leap_day_birthday():
    # given someone born on 29 February 2000
    # then they turn 26 on 1 March 2026, not on 28 February
    assert rules.age_on(dt.date(2000, 2, 29), dt.date(2026, 2, 28)) == 25
    assert rules.age_on(dt.date(2000, 2, 29), dt.date(2026, 3, 1)) == 26


@pytest.mark.parametrize(
    ("address", "known", "code"),
    [
        ("東京都千代田区丸の内1-1-1", "", "13"),
        ("大阪市北区梅田1-1", "", "27"),
        ("京都市左京区", "", "26"),
        ("北海道札幌市中央区", "", "01"),
        ("千代田区丸の内1-1-1", "", ""),
        ("どこか", "47", "47"),
    ],
)
def test_prefecture_of(address, known, code):
    assert rules.prefecture_of(address, known) == code


def test_id_slices_cover_the_range_once():
    # given ids 1..10 split four ways
    parts = rules.id_slices(0, 10, 4)
    # then the half-open ranges are contiguous and cover every id exactly once
    assert parts == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert rules.id_slices(5, 5, 4) == []
    assert rules.id_slices(0, 2, 8) == [(0, 1), (1, 2)]


def test_subject_hash_is_keyed():
    # given the same id under two keys
    # then the hashes differ, and each is stable
    a, b = rules.subject_hash(b"k1", 42), rules.subject_hash(b"k2", 42)
    assert a != b and len(a) == 64
    assert rules.subject_hash(b"k1", 42) == a
