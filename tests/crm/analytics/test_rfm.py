"""RFM on worked data: five customers whose recency, frequency and monetary values are computed by hand,
scored in quintiles and named by the segment rule; stop-use and objecting customers never modelled."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from consent import services as consent_services
from crm.analytics import eligibility, rules, services
from crm.analytics.models import RfmScore
from crm.models import AuditEntry, Customer, Purchase
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db
JST = ZoneInfo("Asia/Tokyo")
AS_OF = dt.date(2026, 4, 30)


def _buy(customer: Customer, when: str, amount: int) -> None:
    at = dt.datetime.fromisoformat(when)
    Purchase.objects.create(
        customer=customer,
        team=customer.team,
        amount=amount,
        channel="web_form",
        purchased_at=at if at.tzinfo else at.replace(tzinfo=JST),
    )


@pytest.fixture
def worked(team):
    people = {name: CustomerFactory(team=team, status=Customer.Status.ACTIVE) for name in "ABCDEFGH"}
    for day in (26, 27, 28, 29):
        _buy(people["A"], f"2026-04-{day}T12:00", 10000)
    _buy(people["A"], "2026-04-25T12:00", 10000)
    _buy(people["A"], "2026-04-30T23:30+09:00", 1)  # the last minutes of the reference day count
    _buy(people["A"], "2026-05-01T00:10+09:00", 99999)  # the next day does not
    for day in (17, 18, 19, 20):
        _buy(people["B"], f"2026-04-{day}T12:00", 1000)
    _buy(people["C"], "2026-04-01T09:00", 30000)
    _buy(people["C"], "2026-04-01T18:00", 30000)  # same day: one purchase day, spend summed
    for month in (1, 2, 3):
        _buy(people["D"], f"2026-0{month}-01T12:00", 500)
    _buy(people["E"], "2026-01-14T12:00", 100)
    _buy(people["E"], "2026-01-15T12:00", 100)
    _buy(people["F"], "2026-05-02T12:00", 100)  # only after the reference day: not scored
    _buy(people["G"], "2026-04-29T12:00", 100)  # stop-use (APPI 35): never modelled
    _buy(people["H"], "2026-04-29T12:00", 100)  # objected to the analytics purpose (GDPR 21(1))
    Customer.objects.filter(pk=people["G"].pk).update(status=Customer.Status.STOP_USE)
    consent_services.objection_record(
        customer=people["H"], scope="purpose", source="admin", purpose_code="analytics"
    )
    return people


def test_rfm_on_worked_data(worked):
    # when RFM runs for the customers the analytics purpose may use, as of 2026-04-30, in quintiles
    run = services.rfm_compute(eligible=eligibility.eligible_customers("analytics"), as_of=AS_OF)

    # then exactly A–E are scored, with the values computed by hand and one customer per quintile
    scores = {s.customer_id: s for s in RfmScore.objects.filter(run=run)}
    got = {
        name: (s.recency_days, s.frequency, s.monetary, s.r_score, s.f_score, s.m_score, s.segment)
        for name, c in worked.items()
        if (s := scores.get(c.pk))
    }
    assert got == {
        "A": (0, 6, Decimal("50001.00"), 5, 5, 4, "champions"),
        "B": (10, 4, Decimal("4000.00"), 4, 4, 3, "loyal"),
        "C": (29, 1, Decimal("60000.00"), 3, 1, 5, "promising"),
        "D": (31 + 29, 3, Decimal("1500.00"), 2, 3, 2, "at_risk"),
        "E": (105, 2, Decimal("200.00"), 1, 2, 1, "lost"),
    }
    assert run.customers == 5
    # each score's input range is kept for explanations
    assert run.boundaries["f"]["5"] == [6, 6] and run.boundaries["r"]["1"] == [105, 105]
    # one audit entry for the run, counts only
    entry = AuditEntry.objects.get(object_pk=f"rfm-run:{run.pk}")
    assert entry.additional_data == {"analytics": {"run": run.pk, "count": 5}}


def test_stop_use_and_objecting_customers_are_never_modelled(worked):
    run = services.rfm_compute(eligible=eligibility.eligible_customers("analytics"), as_of=AS_OF)
    scored = set(RfmScore.objects.filter(run=run).values_list("customer_id", flat=True))
    assert worked["G"].pk not in scored and worked["H"].pk not in scored
    # and both would be scored without the rule: the test can fail
    everyone = services.rfm_compute(eligible=Customer.objects.all(), as_of=AS_OF)
    assert {worked["G"].pk, worked["H"].pk} <= set(
        RfmScore.objects.filter(run=everyone).values_list("customer_id", flat=True)
    )


def test_without_a_registered_use_rule_nobody_is_modelled(worked, monkeypatch):
    monkeypatch.setattr(eligibility, "_use_rule", [])
    run = services.rfm_compute(eligible=eligibility.eligible_customers("analytics"), as_of=AS_OF)
    assert run.customers == 0


def test_cume_dist_gives_equal_values_equal_scores(team):
    # given four customers, two with the same single purchase day of the same amount
    people = [CustomerFactory(team=team) for _ in range(4)]
    for person, (day, amount) in zip(people, [(1, 100), (1, 100), (10, 300), (20, 900)], strict=True):
        _buy(person, f"2026-04-{day:02d}T12:00", amount)
    run = services.rfm_compute(eligible=Customer.objects.all(), as_of=AS_OF, bins=4, method="cume_dist")
    first, second = (RfmScore.objects.get(run=run, customer=p) for p in people[:2])
    assert (first.r_score, first.f_score, first.m_score) == (second.r_score, second.f_score, second.m_score)


def test_only_the_newest_runs_are_kept(worked):
    runs = [services.rfm_compute(eligible=Customer.objects.all(), as_of=AS_OF) for _ in range(3)]
    assert set(RfmScore.objects.values_list("run_id", flat=True)) == {runs[1].pk, runs[2].pk}


@pytest.mark.parametrize("bins", [5, 3, 10])
def test_the_sql_segment_rule_is_the_python_rule(bins):
    # given every (r, f, m) of `bins` bins, when the run's SQL CASE names them
    grid = list(itertools.product(range(1, bins + 1), repeat=3))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT r, f, m, {services.segment_case('%(bins)s')} "
            "FROM unnest(%(r)s, %(f)s, %(m)s) AS g(r, f, m)",
            {"bins": bins, "r": [g[0] for g in grid], "f": [g[1] for g in grid], "m": [g[2] for g in grid]},
        )
        sql = {(r, f, m): seg for r, f, m, seg in cursor.fetchall()}
    # then every one is named, exactly as crm.analytics.rules names it
    assert sql == {g: rules.rfm_segment(*g, bins=bins) for g in grid}
    assert set(sql.values()) <= set(RfmScore.Segment.values)
