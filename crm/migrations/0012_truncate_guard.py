"""TRUNCATE of the append-only tables is refused by the database as well.

The row triggers (0006 here, consent 0002) refuse UPDATE and DELETE; TRUNCATE fires no row trigger, so a
`manage.py flush` or a stray `TRUNCATE … CASCADE` (one naming crm_customer cascades into the ledger) emptied
the audit trail and the consent ledger at once. A statement trigger now refuses it unless the session has
set `crm.allow_truncate = 'on'`: the test suite's flush between transactional tests (tests/conftest.py) and
scratch bench databases do. Like crm.audit_maintenance, whoever can set it can also tamper: a guard against
mistakes; the audit chain's head still shows a truncated trail. consent 0005 puts the trigger on the ledger.
"""

from django.db import migrations

FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION crm_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('crm.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '追記専用の表 % は TRUNCATE できません', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Only a scratch or test database may be emptied: SET crm.allow_truncate = on first.';
END;
$$;
"""

AUDIT_TABLES = ("crm_auditentry", "crm_auditchainhead")


def guard_sql(tables: tuple[str, ...]) -> str:
    return "\n".join(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION crm_refuse_truncate();"
        for table in tables
    )


def unguard_sql(tables: tuple[str, ...]) -> str:
    return "\n".join(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table};" for table in tables)


class Migration(migrations.Migration):
    dependencies = [("crm", "0011_audit_index_diet")]

    operations = [
        migrations.RunSQL(
            FUNCTION_SQL + guard_sql(AUDIT_TABLES),
            unguard_sql(AUDIT_TABLES) + "\nDROP FUNCTION IF EXISTS crm_refuse_truncate();",
        )
    ]
