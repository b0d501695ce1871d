"""Analytics scores written directly for the insights' tests (what crm.analytics' runs and fits leave)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from crm.analytics.models import ClvFit
from crm.models import Customer
from tests.factories import clv_score_for


def clv_fit_with(
    scores: Iterable[tuple[Customer, float, float]], calibration_end: dt.date = dt.date(2026, 1, 31)
) -> ClvFit:
    """A CLV fit scoring each (customer, expected CLV in yen, P(alive)); the other inputs are placeholders."""
    fit = ClvFit.objects.create(calibration_end=calibration_end, r=1, alpha=1, a=1, b=1, log_likelihood=0)
    for customer, clv, alive in scores:
        clv_score_for(customer, fit=fit, clv=clv, p_alive=alive)
    return fit
