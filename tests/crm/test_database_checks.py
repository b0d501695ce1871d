"""The database deploy checks of crm.checks: autovacuum (crm.W002) and who could lift the audit guard
(crm.W003)."""

from __future__ import annotations

import pytest
from django.db import connection


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
