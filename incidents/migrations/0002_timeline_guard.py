"""The database itself refuses UPDATE and DELETE of the incident timeline and the filings (who did what
when in a breach response is evidence: 規則8's reports and GDPR Art. 33(5)'s documentation rest on it),
whatever path a change takes (ORM, raw SQL, psql); TRUNCATE is refused by crm's guard (crm 0012/0015: only
the role crm_maintenance with crm.allow_truncate = on may empty them)."""

import importlib

from django.db import migrations

_guard = importlib.import_module("crm.migrations.0012_truncate_guard")
GUARDED = ("incidents_incidenttimelineentry", "incidents_incidentfiling")

FUNCTION = """
CREATE OR REPLACE FUNCTION incidents_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '追記専用の表 %: % は拒否されました（対応記録・報告の提出は変更できません）',
        TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


def _forward() -> str:
    sql = [FUNCTION]
    for table in GUARDED:
        sql.append(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION incidents_refuse_change();"
        )
    sql.append(_guard.guard_sql(GUARDED))
    return "\n".join(sql)


def _backward() -> str:
    sql = [_guard.unguard_sql(GUARDED)]
    sql += [f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};" for table in GUARDED]
    sql.append("DROP FUNCTION IF EXISTS incidents_refuse_change();")
    return "\n".join(sql)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0001_initial"),
        ("crm", "0016_merge_0014_external_id_per_team_0015_maintenance_role"),
    ]

    operations = [migrations.RunSQL(_forward(), _backward())]
