"""The purchase's customer and team keys, kept by set-based triggers (crm migration 0028) instead of per-row
foreign keys: no purchase ever points at a missing customer or team, alone and under concurrency."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction

from crm.models import Customer, Purchase
from tests.factories import CustomerFactory, TeamFactory
from tests.marks import transactional_all_apps
from tests.services import database_conninfo

INSERT = (
    "INSERT INTO crm_purchase (customer_id, team_id, amount, quantity, category, currency, channel, "
    "purchased_at, created_at) VALUES (%s, %s, 100, 1, '', 'JPY', 'import', now(), now())"
)
DELETE = "DELETE FROM crm_customer WHERE id = %s"


def _purchase(customer: Customer) -> Purchase:
    return Purchase.objects.create(
        customer=customer,
        team_id=customer.team_id,
        amount=100,
        channel=Customer.Channel.IMPORT,
        purchased_at=dt.datetime(2026, 4, 1, tzinfo=dt.UTC),
    )


@pytest.mark.django_db
def test_a_purchase_of_a_missing_customer_or_team_is_refused_at_once(team):
    customer = CustomerFactory(team=team)
    with pytest.raises(IntegrityError, match="customer_id"), transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(INSERT, [customer.pk + 1000, team.pk])
    with pytest.raises(IntegrityError, match="team_id"), transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(INSERT, [customer.pk, team.pk + 1000])
    # one bad row among good ones refuses the statement; an unlinked purchase (no customer) is fine
    with pytest.raises(IntegrityError), transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(
                INSERT.replace("VALUES (%s, %s,", "SELECT c, %s,").removesuffix(")")
                + " FROM unnest(%s::bigint[]) c",
                [team.pk, [customer.pk, customer.pk, customer.pk + 1000]],
            )
    with connection.cursor() as cur:
        cur.execute(INSERT, [None, team.pk])
    assert Purchase.objects.filter(customer=None, team=team).count() == 1


@pytest.mark.django_db
def test_moving_a_purchase_to_a_missing_customer_is_refused(team):
    purchase = _purchase(CustomerFactory(team=team))
    with pytest.raises(IntegrityError, match="customer_id"), transaction.atomic():
        Purchase.objects.filter(pk=purchase.pk).update(customer_id=purchase.customer_id + 1000)
    # unlinking (erasure) is an update too, and allowed
    Purchase.objects.filter(pk=purchase.pk).update(customer=None)


@pytest.mark.django_db
def test_deleting_a_customer_its_purchases_point_at_is_refused_at_commit(team):
    customer = CustomerFactory(team=team)
    purchase = _purchase(customer)
    # deleted with its purchases still pointing at it: refused when the check runs (at commit; here, inside
    # the test's transaction, when the constraints are made immediate)
    with pytest.raises(IntegrityError, match="still referenced"), transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(DELETE, [customer.pk])
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    # deleted first and unlinked later in the same transaction (erasure's order): the check is deferred
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL DEFERRED")
        _dependents_delete(customer)
        cur.execute(DELETE, [customer.pk])
        cur.execute("UPDATE crm_purchase SET customer_id = NULL WHERE customer_id = %s", [customer.pk])
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    purchase.refresh_from_db()
    assert purchase.customer_id is None and not Customer.objects.filter(pk=customer.pk).exists()


@pytest.mark.django_db
def test_deleting_a_team_with_purchases_is_refused():
    other = TeamFactory(code="keys-other")
    with connection.cursor() as cur:
        cur.execute(INSERT, [None, other.pk])  # an unlinked purchase: only the team points at it
    with pytest.raises(IntegrityError, match="still referenced"), transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("DELETE FROM crm_team WHERE id = %s", [other.pk])
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert Purchase.objects.filter(team=other).count() == 1


@pytest.mark.django_db
def test_truncating_customers_alone_is_refused_while_purchases_point_at_them(team):
    _purchase(CustomerFactory(team=team))
    with pytest.raises(IntegrityError, match="purchases reference"), transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending events of the set-up
            cur.execute("SET LOCAL crm.allow_truncate = on")
            cur.execute("TRUNCATE crm_customer CASCADE")


# --- concurrency: two real connections --------------------------------------------------------------------


def _waiting(pid: int, timeout: float = 10.0) -> bool:
    """Whether backend `pid` is (or comes to be) waiting for a lock."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_conninfo(), autocommit=True) as watcher:
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]
            ).fetchone()
            if row and row[0] == "Lock":
                return True
            time.sleep(0.05)
    return False


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(fn())
        except Exception as exc:  # returned for the assertions
            out.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


def _bare_customer() -> Customer:
    """A customer with nothing else pointing at it (so a raw DELETE of it is only about purchases)."""
    customer = CustomerFactory(team=TeamFactory(code=f"keys-{time.monotonic_ns()}"))
    _dependents_delete(customer)
    return customer


def _dependents_delete(customer: Customer) -> None:
    with connection.cursor() as cur:
        for table in ("consent_consentstate", "crm_customerevent"):
            cur.execute(f"DELETE FROM {table} WHERE customer_id = %s", [customer.pk])


@transactional_all_apps()
def test_a_customer_deleted_while_its_purchase_is_being_inserted_is_refused_to_the_deleter():
    # given a purchase inserted for a customer, not yet committed
    customer = _bare_customer()
    with (
        psycopg.connect(database_conninfo()) as inserter,
        psycopg.connect(database_conninfo()) as deleter,
    ):
        inserter.execute(INSERT, [customer.pk, customer.team_id])
        # when another session deletes the customer, it waits for the insert's lock
        thread, out = _in_thread(lambda: (deleter.execute(DELETE, [customer.pk]), deleter.commit()))
        assert _waiting(deleter.info.backend_pid)
        inserter.commit()
        thread.join(20)
    # then the deletion fails at its commit (it sees the committed purchase) and both rows stay
    assert len(out) == 1 and isinstance(out[0], psycopg.errors.ForeignKeyViolation), out
    assert Customer.objects.filter(pk=customer.pk).exists()
    assert Purchase.objects.filter(customer_id=customer.pk).count() == 1


@transactional_all_apps()
def test_a_purchase_inserted_while_its_customer_is_being_deleted_is_refused_to_the_inserter():
    # given a customer deleted by a session that has not committed yet
    customer = _bare_customer()
    with (
        psycopg.connect(database_conninfo()) as inserter,
        psycopg.connect(database_conninfo()) as deleter,
    ):
        deleter.execute(DELETE, [customer.pk])
        # when a purchase of that customer is inserted, its check waits for the deletion
        thread, out = _in_thread(
            lambda: (inserter.execute(INSERT, [customer.pk, customer.team_id]), inserter.commit())
        )
        assert _waiting(inserter.info.backend_pid)
        deleter.commit()  # no purchase visible to it: the deletion succeeds
        thread.join(20)
    # then the insert finds the customer gone and fails: no purchase points at a missing customer
    assert len(out) == 1 and isinstance(out[0], psycopg.errors.ForeignKeyViolation), out
    assert not Customer.objects.filter(pk=customer.pk).exists()
    assert not Purchase.objects.filter(customer_id=customer.pk).exists()


@transactional_all_apps()
def test_a_customer_cannot_be_deleted_at_repeatable_read():
    customer = _bare_customer()
    with psycopg.connect(database_conninfo()) as deleter:
        deleter.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        deleter.execute(DELETE, [customer.pk])
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            deleter.commit()
    assert Customer.objects.filter(pk=customer.pk).exists()
