"""The ledger's encrypted evidence, written in one statement (consent.services._ledger_write), is bound to
its own column like every other encrypted value (crm.crypto)."""

from __future__ import annotations

import pytest
from django.db import connection

from crm.crypto import DecryptionError
from crm.models import Customer

pytestmark = pytest.mark.django_db


def test_a_ledger_token_copied_into_a_customer_column_is_refused(customer, grant):
    # given a consent whose source address was encrypted by the one-statement ledger write
    event = grant(customer, evidence={"source_ip": "203.0.113.7"})
    with connection.cursor() as cur:
        cur.execute("SELECT source_ip FROM consent_consentevent WHERE id = %s", [event.pk])
        token = cur.fetchone()[0]
    # when that token is copied into the customer's e-mail column (another table, same key)
    with connection.cursor() as cur:
        cur.execute("UPDATE crm_customer SET email = %s WHERE id = %s", [token, customer.pk])
    # then reading the customer refuses, naming the column, and never shows the address as an e-mail
    with pytest.raises(DecryptionError) as exc_info:
        Customer.objects.get(pk=customer.pk)
    assert "crm.Customer.email" in str(exc_info.value)
    assert "203.0.113.7" not in repr(exc_info.value)
