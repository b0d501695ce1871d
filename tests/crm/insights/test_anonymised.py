"""匿名加工情報 (APPI Art. 43): every released combination of the quasi-identifiers has at least k rows
(a property over generated data sets), unusual values are removed, identifiers never leave, the report is
saved with the export and the publication of the items is recorded once."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from crm import services as crm_services
from crm.insights import rules, services
from crm.insights.models import Segment, SegmentExport
from tests.factories import CustomerFactory

QUASI = ("age_band", "prefecture", "gender", "first_purchase_month")

rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "age_band": st.sampled_from(["10代", "20代", "30代", "40代", "50代", "60代", "90歳以上", "*"]),
            "prefecture": st.sampled_from([f"{n:02d}" for n in range(1, 48)] + ["*"]),
            "gender": st.sampled_from(["female", "male", "other", "*"]),
            "first_purchase_month": st.sampled_from(
                [f"{y}-{m:02d}" for y in (2024, 2025) for m in range(1, 13)] + ["*"]
            ),
            "purchases": st.sampled_from(["0", "1", "2", "20+"]),
        }
    ),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(
    rows=rows_strategy,
    k=st.integers(min_value=2, max_value=12),
    suppression=st.sampled_from([0.0, 0.05, 0.3]),
)
def test_every_released_combination_has_at_least_k_rows(rows, k, suppression):
    released, report = rules.k_anonymise(
        rows, quasi=QUASI, k=k, max_suppression=suppression, unusual={"age_band": frozenset({"90歳以上"})}
    )
    counts = Counter(tuple(r[c] for c in QUASI) for r in released)
    # every released combination has at least k rows, and the report says the smallest one
    assert all(n >= k for n in counts.values())
    assert report.k_achieved == (min(counts.values()) if counts else 0)
    # no unusual value leaves, and every row is accounted for
    assert all(r["age_band"] != "90歳以上" for r in released)
    assert report.rows_released + report.rows_suppressed + report.unusual_removed == len(rows)
    assert report.rows_released == len(released)


def test_generalisation_before_suppression_on_a_worked_example():
    # given six people in two prefectures of 関東, in their 30s and 40s (two twenty-year bands), k = 3
    rows = [
        {"age_band": age, "prefecture": pref, "gender": "female", "first_purchase_month": "2025-04"}
        for age, pref in [
            ("30代", "13"),
            ("40代", "13"),
            ("30代", "14"),
            ("40代", "14"),
            ("30代", "13"),
            ("40代", "14"),
        ]
    ]
    released, report = rules.k_anonymise(rows, quasi=QUASI, k=3, max_suppression=0.0)
    # then the prefectures become their region and nobody is suppressed (region 関東: one class of six)
    assert report.rows_suppressed == 0 and report.k_achieved >= 3
    assert {r["prefecture"] for r in released} <= {"関東", "*"}


@pytest.mark.django_db
def test_anonymised_export_drops_identifiers_and_saves_the_report(team, support_agent):
    # given twelve Tokyo customers with purchases, and one aged over 90 (an unusual value)
    today = dt.date.today()
    for n in range(12):
        customer = CustomerFactory(
            team=team, prefecture="13", gender="female", birth_date=dt.date(today.year - 35, 1, 1)
        )
        crm_services.purchase_record(
            team=team,
            customer=customer,
            order_no=f"ANON-{n}",
            amount=3000,
            channel="web_form",
            purchased_at=dt.datetime(2025, 4, 10, tzinfo=dt.UTC),
        )
    CustomerFactory(team=team, prefecture="13", gender="female", birth_date=dt.date(today.year - 95, 1, 1))
    segment = Segment.objects.create(name="東京", filters={"prefectures": ["13"]})
    support_agent.user_permissions.add(
        *Permission.objects.filter(codename__in=["export_segment", "view_segment"])
    )
    user = type(support_agent).objects.get(pk=support_agent.pk)
    # when an anonymised data set with k = 5 is made
    export, rows = services.segment_export_anonymised(user=user, segment=segment, k=5)
    # then it carries the generalised items only: no id, name, e-mail, member number
    assert rows[0] == list(services.ANONYMISED_ITEMS)
    text = str(rows)
    assert "@example.com" not in text and "山田" not in text and "F0" not in text
    # the unusual row is removed and the report is saved with the export
    assert export.kind == SegmentExport.Kind.ANONYMISED
    assert export.report["unusual_removed"] == 1
    assert export.report["k_achieved"] >= 5 and len(rows) - 1 == export.report["rows_released"] == 12
    # and the publication of its items is recorded, once
    services.anonymised_items_published(export=export, url="https://example.jp/anonymised-items", actor=user)
    export.refresh_from_db()
    assert export.items_published_at is not None
    with pytest.raises(ValidationError):
        services.anonymised_items_published(export=export, url="https://example.jp/again", actor=user)
