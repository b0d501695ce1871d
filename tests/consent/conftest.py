"""Fixtures of the consent tests. Purposes come from the seed migration (consent/0003_purposes)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from consent import services
from consent.models import ConsentEvent
from tests.factories import CustomerFactory

JST = ZoneInfo("Asia/Tokyo")


def at(text: str) -> dt.datetime:
    """'2026-04-01 10:00' in Japan time."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=JST)


@pytest.fixture
def grant():
    """Record an opt-in consent on a web form for `customer` (or a visitor) — keyword shorthand."""

    def _grant(customer=None, code="marketing_email", when=None, **kwargs):
        return services.consent_record(
            purpose_code=code,
            action=ConsentEvent.Action.GRANT,
            method=kwargs.pop("method", ConsentEvent.Method.OPT_IN),
            channel=kwargs.pop("channel", ConsentEvent.Channel.WEB_FORM),
            customer=customer,
            occurred_at=when,
            **kwargs,
        )

    return _grant


@pytest.fixture
def withdraw():
    def _withdraw(customer=None, code="marketing_email", when=None, **kwargs):
        return services.consent_record(
            purpose_code=code,
            action=ConsentEvent.Action.WITHDRAW,
            method=ConsentEvent.Method.OPT_OUT,
            channel=kwargs.pop("channel", ConsentEvent.Channel.WEB_FORM),
            customer=customer,
            occurred_at=when,
            **kwargs,
        )

    return _withdraw


@pytest.fixture
def teammate_customer(team):
    """A second customer of `team`."""
    return CustomerFactory(team=team, member_no="M-CONSENT-2")


@pytest.fixture(autouse=True)
def _distinct_member_numbers():
    """The standing `customer` fixture uses member number M000000001; start the factory's sequence past it
    so that `foreign_customer` never collides with it whatever order fixtures are created in."""
    CustomerFactory.reset_sequence(1000)
