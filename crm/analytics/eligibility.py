"""Who may be modelled: the use rule, registered by the app that owns it (crm never imports consent).

consent registers `consent.selectors.usable_for` in its AppConfig.ready() (the one lawful-basis rule:
analytics is legitimate interest, so active customers without a standing objection; stop-use never). The
computations in crm.analytics take the eligible customers as an argument; their callers (the commands,
tasks and admin actions) ask `eligible_customers(purpose)` for it. With no rule registered nothing is
eligible: the analytics fail closed rather than model everyone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from crm.models import Customer

if TYPE_CHECKING:
    from crm.models import CustomerQuerySet

UseRule = Callable[["CustomerQuerySet", str], "CustomerQuerySet"]
_use_rule: list[UseRule] = []

ANALYTICS_PURPOSE = "analytics"


def use_rule_register(rule: UseRule) -> None:
    """Register `(customers, purpose_code) -> customers who may be used for it now` (the consent app)."""
    _use_rule[:] = [rule]


def use_rule() -> UseRule | None:
    return _use_rule[0] if _use_rule else None


def eligible_customers(purpose_code: str = ANALYTICS_PURPOSE) -> CustomerQuerySet:
    """Every customer the registered use rule lets `purpose_code` use now; none without a rule."""
    rule = use_rule()
    customers = Customer.objects.all()
    return rule(customers, purpose_code) if rule is not None else customers.none()
