"""The database itself refuses UPDATE and DELETE on the consent ledger and the purpose versions: append-only
for real, whatever path (ORM, raw SQL, psql) a change takes (GDPR Art. 7(1)). TRUNCATE is a table owner's
right and is not caught by row triggers: the application's database role must not own these tables in
production (or must have TRUNCATE revoked)."""

from django.db import migrations

GUARDED = ("consent_consentevent", "consent_purposeversion")

FUNCTION = """
CREATE OR REPLACE FUNCTION consent_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'append-only table %: % refused (consent ledger / purpose versions are immutable)',
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
            f"FOR EACH ROW EXECUTE FUNCTION consent_refuse_change();"
        )
    return "\n".join(sql)


def _backward() -> str:
    sql = [f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};" for table in GUARDED]
    sql.append("DROP FUNCTION IF EXISTS consent_refuse_change();")
    return "\n".join(sql)


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_initial")]

    operations = [migrations.RunSQL(_forward(), _backward())]
