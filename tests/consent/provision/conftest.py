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


@pytest.fixture
def us_processor(db):
    recipient = Recipient.objects.create(
        name="Analytics Cloud Inc.", kind=Recipient.Kind.PROCESSOR, country="US"
    )
    ProcessorContract.objects.create(
        recipient=recipient, signed_on=dt.date(2025, 4, 1), document_ref="CT-1", **ALL_CLAUSES
    )
    return recipient


@pytest.fixture
def de_group(db):
    return Recipient.objects.create(name="Muster GmbH", kind=Recipient.Kind.GROUP_COMPANY, country="DE")
