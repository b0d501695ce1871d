"""RFM runs in two slots made by a migration (crm 0027): a run fills the slot the newest run does not use and
becomes the newest at its commit; the application's role empties a slot only through the migration's
function; a customer's deletion removes their scores, also while a run fills its slot."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from zoneinfo import ZoneInfo

import psycopg
import pytest
from django.db import ProgrammingError, connection, transaction

from crm.analytics import selectors, services
from crm.analytics.models import RfmRun, RfmScore
from crm.models import Customer, Purchase
from tests.factories import CustomerFactory, TeamFactory
from tests.marks import transactional_all_apps
from tests.services import database_conninfo

JST = ZoneInfo("Asia/Tokyo")
AS_OF = dt.date(2026, 4, 30)


def _buyers(n: int) -> list[Customer]:
    team = TeamFactory(code="rfm-slots")
    people = [CustomerFactory(team=team, status=Customer.Status.ACTIVE) for _ in range(n)]
    for i, person in enumerate(people):
        for day in range(1, i + 2):
            Purchase.objects.create(
                customer=person,
                team=team,
                amount=1000 * (i + 1),
                channel="web_form",
                purchased_at=dt.datetime(2026, 4, day, 12, tzinfo=JST),
            )
    return people


def _compute() -> RfmRun:
    return services.rfm_compute(eligible=Customer.objects.all(), as_of=AS_OF)


def _slot_rows() -> dict[int, set[int]]:
    """Run ids found in each slot's partition."""
    out: dict[int, set[int]] = {}
    with connection.cursor() as cur:
        for slot in (0, 1):
            cur.execute(f"SELECT DISTINCT run_id FROM {services.rfm_slot_table(slot)}")
            out[slot] = {r[0] for r in cur.fetchall()}
    return out


@pytest.mark.django_db
def test_runs_alternate_between_the_two_slots_and_the_run_before_last_goes():
    people = _buyers(3)
    first, second, third = _compute(), _compute(), _compute()
    # each run in the slot the previous one did not use
    assert (first.slot, second.slot, third.slot) == (0, 1, 0)
    # the third emptied the first's slot (and its run row): two complete runs remain, one per slot
    assert _slot_rows() == {0: {third.pk}, 1: {second.pk}}
    assert list(RfmRun.objects.order_by("pk")) == [second, third]
    assert RfmScore.objects.filter(run=third, slot=third.slot).count() == third.customers == len(people)
    # readers read the newest run, from its slot only
    assert selectors.latest_rfm_run() == third
    scores = RfmScore.objects.filter(run=third, slot=third.slot)
    assert set(scores.values_list("customer_id", flat=True)) == {p.pk for p in people}


@pytest.mark.django_db
def test_a_deleted_customer_loses_their_scores_in_both_slots_even_by_plain_sql():
    # given two runs, so both slots score the customer
    people = _buyers(2)
    _compute(), _compute()
    assert RfmScore.objects.filter(customer=people[0]).count() == 2
    # when the customer row is deleted without the ORM (its purchases first, as the ORM would unlink them)
    with connection.cursor() as cur:
        cur.execute("DELETE FROM crm_purchase WHERE customer_id = %s", [people[0].pk])
        cur.execute("DELETE FROM crm_customer WHERE id = %s", [people[0].pk])
    # then the statement trigger of migration 0027 deleted their scores; the other customer's stay
    assert not RfmScore.objects.filter(customer_id=people[0].pk).exists()
    assert RfmScore.objects.filter(customer=people[1]).count() == 2


@pytest.mark.django_db
def test_the_application_role_runs_rfm_within_its_rights(caplog):
    # given a role with the application's rights (README "Database roles"): no TRUNCATE, no DDL, and no
    # EXECUTE on the slot function yet
    people = _buyers(2)
    role = f"rfm_app_{uuid.uuid4().hex[:10]}"
    with connection.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} NOLOGIN")
        cur.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        cur.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")
    try:
        with connection.cursor() as cur:
            cur.execute(f"SET ROLE {role}")
        # it may neither truncate a slot itself nor call the function without the grant
        for statement in ("TRUNCATE crm_rfmscore_s0", f"SELECT {services.RFM_SLOT_CLEAR}()"):
            with pytest.raises(ProgrammingError, match="permission denied"):
                with transaction.atomic(), connection.cursor() as cur:
                    cur.execute(statement)
        # without the grant a run still completes: the slot's rows are deleted instead, and it says so
        with caplog.at_level(logging.WARNING, logger="crm.analytics"):
            first, second = _compute(), _compute()
        assert "insufficient_privilege" in caplog.text
        with connection.cursor() as cur:
            cur.execute("RESET ROLE")
            cur.execute(f"GRANT EXECUTE ON FUNCTION {services.RFM_SLOT_CLEAR}() TO {role}")
            cur.execute(f"SET ROLE {role}")
        caplog.clear()
        # with it, the function truncates the slot the newest run does not use (and deletes its run)
        with caplog.at_level(logging.WARNING, logger="crm.analytics"):
            third = _compute()
        assert "not truncated" not in caplog.text
        assert third.slot == first.slot and not RfmRun.objects.filter(pk=first.pk).exists()
        assert _slot_rows() == {first.slot: {third.pk}, second.slot: {second.pk}}
        assert RfmScore.objects.filter(run=third).count() == len(people)
    finally:
        with connection.cursor() as cur:
            cur.execute("RESET ROLE")


@pytest.mark.django_db
def test_the_function_never_truncates_the_live_slot():
    _buyers(1)
    run = _compute()
    with connection.cursor() as cur:
        cur.execute(f"SELECT {services.RFM_SLOT_CLEAR}()")
        assert cur.fetchone()[0] == 1 - run.slot
    assert RfmScore.objects.filter(run=run).count() == 1


def _other_session() -> psycopg.Connection:
    other = psycopg.connect(database_conninfo(), autocommit=True)
    other.execute("SET statement_timeout = '10s'")
    return other


@transactional_all_apps()
def test_readers_see_the_previous_complete_run_until_the_new_one_commits(monkeypatch):
    people = _buyers(3)
    first = _compute()
    seen: dict[str, object] = {}
    boundaries = services._rfm_boundaries

    def read_meanwhile(cursor, table):  # type: ignore[no-untyped-def]
        # the new run's scores are in its slot, not committed: another session reads what readers read
        with _other_session() as other:
            newest = "SELECT id, slot FROM crm_rfmrun ORDER BY id DESC LIMIT 1"
            run_id, slot = other.execute(newest).fetchone()
            seen["run"] = run_id
            seen["in_slot"] = other.execute(
                "SELECT count(*) FROM crm_rfmscore WHERE run_id = %s AND slot = %s", [run_id, slot]
            ).fetchone()[0]
            # a reader of both partitions is not blocked by the filling run either
            seen["all"] = other.execute("SELECT count(*) FROM crm_rfmscore").fetchone()[0]
        return boundaries(cursor, table)

    monkeypatch.setattr(services, "_rfm_boundaries", read_meanwhile)
    second = _compute()
    assert seen == {"run": first.pk, "in_slot": len(people), "all": len(people)}
    # and at its commit the new run is the newest, complete
    assert selectors.latest_rfm_run() == second and second.slot != first.slot
    assert RfmScore.objects.filter(run=second, slot=second.slot).count() == len(people)


@transactional_all_apps()
def test_a_slot_a_reader_holds_is_emptied_by_delete_instead(caplog):
    # given two runs, and a session still inside a transaction that read the older run's slot
    people = _buyers(2)
    first, second = _compute(), _compute()
    with _other_session() as other:
        other.execute("BEGIN")
        other.execute(f"SELECT count(*) FROM {services.rfm_slot_table(first.slot)}")
        # when a third run needs that slot, the truncation waits 2 s at most, then the run deletes its rows
        with caplog.at_level(logging.WARNING, logger="crm.analytics"):
            third = _compute()
        other.execute("ROLLBACK")
    assert "lock_not_available" in caplog.text
    assert third.slot == first.slot and not RfmRun.objects.filter(pk=first.pk).exists()
    assert _slot_rows() == {first.slot: {third.pk}, second.slot: {second.pk}}
    assert RfmScore.objects.filter(run=third).count() == len(people)


@transactional_all_apps()
def test_a_customer_deleted_while_a_run_fills_its_slot_loses_the_new_score_too(monkeypatch):
    # given a customer scored by a first run, and a second run paused after filling its slot
    people = _buyers(3)
    victim = people[0]
    _compute()
    filled, go = threading.Event(), threading.Event()
    boundaries = services._rfm_boundaries

    def pause(cursor, table):  # type: ignore[no-untyped-def]
        filled.set()
        go.wait(20)
        return boundaries(cursor, table)

    monkeypatch.setattr(services, "_rfm_boundaries", pause)
    done: dict[str, object] = {}

    def run() -> None:
        try:
            done["run"] = _compute()
        finally:
            connection.close()

    def delete() -> None:
        # the customer row deleted by plain SQL (the statement trigger deletes the scores)
        with psycopg.connect(database_conninfo()) as other:
            other.execute("SET statement_timeout = '20s'")
            other.execute("DELETE FROM crm_purchase WHERE customer_id = %s", [victim.pk])
            other.execute("DELETE FROM crm_customer WHERE id = %s", [victim.pk])
        done["deleted"] = True

    runner = threading.Thread(target=run)
    runner.start()
    assert filled.wait(20)
    deleter = threading.Thread(target=delete)
    deleter.start()
    time.sleep(0.5)
    # the deletion waits for the run (it holds its slot) …
    assert deleter.is_alive()
    go.set()
    runner.join(20)
    deleter.join(20)
    # … then deletes the new score as well: no score outlives its customer
    second = done["run"]
    assert isinstance(second, RfmRun) and done["deleted"]
    assert second.customers == len(people)
    assert not RfmScore.objects.filter(customer_id=victim.pk).exists()
    assert RfmScore.objects.filter(run=second).count() == len(people) - 1
