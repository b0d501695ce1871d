"""The request desk's on-time rate on the KPI page (issue #18, registered by consent): per JST month of the
answer, the share of completed or rejected requests answered on or before their binding due date."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from consent.requests import selectors, services
from consent.requests.models import DataSubjectRequest
from crm.insights import hooks
from crm.insights import selectors as insights_selectors
from tests.consent.conftest import phone_request

JST = ZoneInfo("Asia/Tokyo")
JAN, FEB, MAR = dt.date(2026, 1, 1), dt.date(2026, 2, 1), dt.date(2026, 3, 1)


def at(y: int, m: int, d: int, h: int = 12) -> dt.datetime:
    return dt.datetime(y, m, d, h, tzinfo=JST)


def _answered(handler, *, received: dt.datetime, answered: dt.datetime, jurisdiction: str = "appi"):
    """A request received at `received` and rejected (answered) at `answered`."""
    request = phone_request(handler, received_at=received, jurisdiction=jurisdiction)
    request = services.request_reject(
        request=request, actor=handler, ground="appi_33_2_2", explanation="保有個人データがありません。"
    )
    # the answer's moment is the worked date (the service stamps "now")
    DataSubjectRequest.objects.filter(pk=request.pk).update(closed_at=answered)
    request.refresh_from_db()
    return request


@pytest.mark.django_db
def test_on_time_rate_per_month_of_the_answer_against_the_binding_due_date(handler):
    # given (APPI, 14 days from the day after receipt, legal-rules.md; consent.rules.request_due_dates):
    # received 5 Jan → due 19 Jan; answered 19 Jan 23:30 JST (on the due day: on time)
    on_due_day = _answered(handler, received=at(2026, 1, 5, 10), answered=at(2026, 1, 19, 23))
    assert on_due_day.due_on == dt.date(2026, 1, 19)
    # received 10 Jan → due 24 Jan; answered 25 Jan 00:30 JST (15:30 UTC on the 24th): one day late
    late = _answered(
        handler, received=at(2026, 1, 10, 9), answered=dt.datetime(2026, 1, 24, 15, 30, tzinfo=dt.UTC)
    )
    assert late.due_on == dt.date(2026, 1, 24)
    # received 20 Jan → due 3 Feb; answered 2 Feb: on time, counted in February
    _answered(handler, received=at(2026, 1, 20, 9), answered=at(2026, 2, 2))
    # GDPR only: received 15 Jan → due 15 Feb (one month, Art. 12(3)); answered 16 Feb: late, February
    gdpr = _answered(handler, received=at(2026, 1, 15, 9), answered=at(2026, 2, 16), jurisdiction="gdpr")
    assert gdpr.due_on == dt.date(2026, 2, 15)
    # an open request counts nowhere
    phone_request(handler, received_at=at(2026, 1, 6, 9), email="hanako@example.com")
    # when the KPI series is computed for January to March
    rates = selectors.on_time_rate_by_month([JAN, FEB, MAR])
    # then January is one of two on time, February one of two, March has no answers (no value, not zero)
    assert rates == {"on_time": {"2026-01-01": 50.0, "2026-02-01": 50.0}}


@pytest.mark.django_db
def test_the_kpi_page_draws_the_series_consent_registers(handler):
    # given consent registered its series, and one request answered on time in February
    assert "request_on_time" in [s.key for s in hooks.kpi_series()]
    _answered(handler, received=at(2026, 1, 26, 9), answered=at(2026, 2, 2))
    # when the KPI months are computed, then the series is there, blank where nothing was answered
    values = insights_selectors.kpi_months(months=[JAN, FEB], refresh=True)
    assert values[FEB]["request_on_time:on_time"] == 100.0
    assert values[JAN]["request_on_time:on_time"] is None


def test_no_months_no_query():
    assert selectors.on_time_rate_by_month([]) == {}
