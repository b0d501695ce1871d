"""Fixtures of the retention engine tests: policies, purchases and events, frozen clocks."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest
import time_machine

from crm.models import Customer, CustomerEvent, Purchase
from crm.retention.models import RetentionPolicy
from crm.retention.rules import JST
from tests.marks import transactional_all_apps

# The instant every worked example is evaluated at: 2026-11-26 12:00 JST.
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=JST)
_orders = itertools.count(1)


def jst(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=JST)


@pytest.fixture
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield NOW


@pytest.fixture
def make_policy(db):
    def make(**kw) -> RetentionPolicy:
        defaults = dict(
            name=f"policy-{next(_orders)}",
            scope=RetentionPolicy.Scope.CUSTOMERS,
            trigger=RetentionPolicy.Trigger.INACTIVE,
            days=3 * 365,
            action=RetentionPolicy.Action.ANONYMISE,
            legal_basis="個人情報保護法第22条",
            enabled=True,
            batch_size=3,
        )
        defaults.update(kw)
        return RetentionPolicy.objects.create(**defaults)

    return make


def add_history(
    customer: Customer, *, purchases: int = 1, events: int = 2, at: dt.datetime | None = None
) -> None:
    """Purchases and events of a customer (the rows erasure must cascade to or unlink)."""
    at = at or jst(2022, 1, 10, 9)
    for _ in range(purchases):
        Purchase.objects.create(
            customer=customer,
            team=customer.team,
            order_no=f"ORD-{next(_orders):08d}",
            amount=Decimal("1980"),
            channel=Customer.Channel.WEB_FORM,
            purchased_at=at,
        )
    for i in range(events):
        CustomerEvent.objects.create(
            customer=customer,
            visitor_id=f"v-{customer.pk}-{i}",
            kind=CustomerEvent.Kind.PAGE_VIEW,
            occurred_at=at + dt.timedelta(days=i),
            properties={"path": "/items/1"},
        )


def set_activity(customer: Customer, when: dt.datetime | None, **extra) -> Customer:
    """Set timestamps directly (not personal data; services would bump them to now)."""
    Customer.objects.filter(pk=customer.pk).update(last_activity_at=when, **extra)
    customer.refresh_from_db()
    return customer


def transactional_db_mark():
    """`transactional_db` that can be flushed (tests.marks)."""
    return transactional_all_apps()
