"""The database backend's health check (config/database): no round trip on a live connection, and a
connection the server has ended is noticed and replaced before a request uses it."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper


@pytest.fixture
def victim():
    """A second connection to the test database, as a web process would hold between requests."""
    other = connection.copy()
    other.ensure_connection()
    yield other
    other.close()


def _wait_readable(wrapper, seconds=2.0):
    import select

    poller = select.poll()
    poller.register(wrapper.connection.fileno(), select.POLLIN)
    deadline = time.monotonic() + seconds
    while not poller.poll(50) and time.monotonic() < deadline:
        pass


def test_the_project_uses_its_backend_with_health_checks():
    assert connection.settings_dict["ENGINE"] == "config.database"
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
    assert connection.vendor == "postgresql"


@pytest.mark.django_db
def test_a_live_idle_connection_is_usable_without_asking_the_server(victim, monkeypatch):
    # given an idle, healthy connection; Django's own check (a SELECT 1) would fail the test if it ran
    def no_round_trip(self):
        raise AssertionError("SELECT 1 was sent")

    monkeypatch.setattr(PostgresDatabaseWrapper, "is_usable", no_round_trip)
    # then it is usable, and stays so across checks
    assert victim.is_usable()
    assert victim.is_usable()


@pytest.mark.django_db
def test_a_connection_ended_by_the_server_is_replaced_before_the_next_request_uses_it(victim):
    # given an idle connection whose server process is ended (a restart, an idle timeout, an operator)
    pid = victim.connection.info.backend_pid
    with connection.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert cur.fetchone()[0] is True
    _wait_readable(victim)
    # then the check says it is not usable
    assert not victim.is_usable()
    # and at the start of the next request Django closes it and the first query runs on a new connection
    victim.health_check_done = False
    victim.close_if_health_check_failed()
    assert victim.connection is None
    with victim.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone()[0] != pid


@pytest.mark.django_db
@pytest.mark.parametrize("on", [True, False])
def test_the_deploy_checks_warn_when_the_server_runs_without_autovacuum(monkeypatch, on):
    # given a server with autovacuum on or off
    from crm import checks

    monkeypatch.setattr(checks, "autovacuum_enabled", lambda using="default": on)
    # when the database checks run, then only a server without autovacuum gets crm.W002
    found = checks.autovacuum_check(databases=["default"])
    assert [w.id for w in found] == ([] if on else ["crm.W002"])
    assert checks.autovacuum_check() == []  # no database asked for: nothing checked


@pytest.mark.django_db
def test_the_autovacuum_setting_is_read_from_the_server():
    from crm.checks import autovacuum_enabled

    with connection.cursor() as cur:
        cur.execute("SHOW autovacuum")
        assert autovacuum_enabled() is (cur.fetchone()[0] == "on")


@pytest.mark.django_db
def test_the_deploy_checks_warn_when_the_app_role_could_lift_the_audit_guard(settings):
    # given production settings and this suite's role, a superuser (and the tables' owner)
    import uuid

    from django.db import connection, transaction

    from crm import checks

    settings.PRODUCTION = True
    assert "superuser" in checks.audit_guard_liftable_by()
    # when the database checks run, then crm.W003 names why
    found = checks.audit_guard_role_check(databases=["default"])
    assert [w.id for w in found] == ["crm.W003"] and "superuser" in found[0].msg

    # given a role like README's application role (not owner, not superuser, no crm_maintenance)
    role = f"crm_check_probe_{uuid.uuid4().hex[:12]}"
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} NOLOGIN")
        cur.execute(f"SET LOCAL ROLE {role}")
        # then nothing is reported for it
        assert checks.audit_guard_liftable_by() == []
        assert checks.audit_guard_role_check(databases=["default"]) == []
        # and granted crm_maintenance, it is reported
        cur.execute("RESET ROLE")
        cur.execute(f"GRANT crm_maintenance TO {role}")
        cur.execute(f"SET LOCAL ROLE {role}")
        assert checks.audit_guard_liftable_by() == ["member of crm_maintenance"]
        cur.execute("RESET ROLE")
        transaction.set_rollback(True)  # the probe role goes with the transaction
    # and outside production nothing is checked
    settings.PRODUCTION = False
    assert checks.audit_guard_role_check(databases=["default"]) == []
