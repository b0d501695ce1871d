"""Recipients for the provision tests: a domestic third party, a US processor, a German group company."""

from __future__ import annotations

import datetime as dt

import pytest

from consent.provision.models import ProcessorContract, Recipient
from consent.provision.rules import CONTRACT_CLAUSES

ALL_CLAUSES = {name: True for name in CONTRACT_CLAUSES}


@pytest.fixture
def partner(db):
    return Recipient.objects.create(
        name="提携ポイント株式会社", kind=Recipient.Kind.THIRD_PARTY, country="JP"
    )


def _processor(name: str, country: str, document_ref: str) -> Recipient:
    """A processor with a contract holding every clause, signed 1 April 2025."""
    recipient = Recipient.objects.create(name=name, kind=Recipient.Kind.PROCESSOR, country=country)
    ProcessorContract.objects.create(
        recipient=recipient, signed_on=dt.date(2025, 4, 1), document_ref=document_ref, **ALL_CLAUSES
    )
    return recipient


@pytest.fixture
def us_processor(db):
    return _processor("Analytics Cloud Inc.", "US", "CT-1")


@pytest.fixture
def domestic_processor(db):
    return _processor("配送センター株式会社", "JP", "CT-2")


@pytest.fixture
def de_group(db):
    return Recipient.objects.create(name="Muster GmbH", kind=Recipient.Kind.GROUP_COMPANY, country="DE")
