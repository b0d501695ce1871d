"""The audit entries crm.services writes for event and purchase rows redact what the registry declares
personal, with no list of field names of their own."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from crm import services
from crm.classification import REDACTED, REGISTRY, DataClass
from crm.models import AuditEntry, Customer, CustomerEvent, Purchase

pytestmark = pytest.mark.django_db

WHEN = dt.datetime(2026, 4, 1, 10, 0, tzinfo=dt.UTC)


def _redeclare(monkeypatch, label: str, name: str, **changes) -> None:
    monkeypatch.setitem(
        REGISTRY.models[label], name, dataclasses.replace(REGISTRY.spec(label, name), **changes)
    )


def _entry_for(instance) -> AuditEntry:
    return AuditEntry.objects.get(object_pk=str(instance.pk), content_type__model=instance._meta.model_name)


def test_event_audit_redacts_the_personal_fields_of_the_registry(customer, monkeypatch):
    # given the event's source system redeclared personal, and its kind redeclared not personal
    label = CustomerEvent._meta.label
    _redeclare(monkeypatch, label, "source", data_class=DataClass.QUASI)
    _redeclare(monkeypatch, label, "kind", data_class=DataClass.NOT_PERSONAL)
    # when an event is recorded
    event = services.event_record(
        kind=CustomerEvent.Kind.PAGE_VIEW, occurred_at=WHEN, customer=customer, source="SRC-9"
    )
    # then its audit entry names exactly the fields the registry calls personal, each redacted
    changes = _entry_for(event).changes
    assert set(changes) == set(REGISTRY.personal_fields(label))
    assert "source" in changes and "kind" not in changes
    assert all(v == ["None", REDACTED] for v in changes.values())
    assert "SRC-9" not in str(changes)


def test_purchase_audit_redacts_the_personal_fields_of_the_registry(team, monkeypatch):
    # given the purchase channel redeclared personal
    label = Purchase._meta.label
    _redeclare(monkeypatch, label, "channel", data_class=DataClass.QUASI)
    # when a purchase is recorded
    purchase = services.purchase_record(
        team=team,
        order_no="ORD-REG-1",
        amount=Decimal("100"),
        channel=Customer.Channel.APP,
        purchased_at=WHEN,
    )
    # then the channel is among the redacted fields, with the others the registry declares
    changes = _entry_for(purchase).changes
    assert set(changes) == set(REGISTRY.personal_fields(label)) >= {"channel", "order_no"}
