"""Lifting the guard of the append-only tables needs the database role `crm_maintenance` (issue #13).

Until now any session could `SET crm.allow_truncate = on` (TRUNCATE of the audit trail and the consent
ledger) or `crm.audit_maintenance = on` (UPDATE/DELETE of audit entries): the application's own credentials
were enough to wipe the trail. The guard functions now also require the current role to be a member of
`crm_maintenance`, a NOLOGIN role created here when absent (creating it needs CREATEROLE: where the role
that migrates lacks it, a database administrator creates it first, `CREATE ROLE crm_maintenance NOLOGIN`).
Grant it to the administrators' role, never to the role the application connects as (README: "Database
roles"). Superusers are members of every role: the application must not connect as one.
The setting is still needed as well, so a member does not empty a table by mistake.
"""

from django.db import migrations

ROLE_SQL = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_maintenance') THEN
        CREATE ROLE crm_maintenance NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created meanwhile by a migration of another database of the same cluster
END;
$$;
"""

GUARD_SQL = """
CREATE OR REPLACE FUNCTION crm_may_maintain(setting text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT current_setting(setting, true) = 'on' AND pg_has_role(current_user, 'crm_maintenance', 'MEMBER')
$$;

CREATE OR REPLACE FUNCTION crm_audit_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF crm_may_maintain('crm.audit_maintenance') THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'crm_auditentry' THEN
        -- Nested: the head table has no chain_seq, and PL/pgSQL resolves fields when it runs an expression.
        IF OLD.chain_seq IS NULL AND NEW.chain_seq IS NOT NULL
           AND (to_jsonb(NEW) - 'chain_seq' - 'chain_hash') = (to_jsonb(OLD) - 'chain_seq' - 'chain_hash') THEN
            RETURN NEW;  -- sealing: the chain fields are set once
        END IF;
    END IF;
    RAISE EXCEPTION '監査ログは追記専用です（% on % refused）', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation',
              HINT = 'Maintenance needs the role crm_maintenance and crm.audit_maintenance = on (crm.audit.audit_maintenance).';
END;
$$;

CREATE OR REPLACE FUNCTION crm_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF crm_may_maintain('crm.allow_truncate') THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '追記専用の表 % は TRUNCATE できません', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Only a scratch or test database may be emptied, by the role crm_maintenance: SET crm.allow_truncate = on first.';
END;
$$;
"""

# The functions as crm 0009 and 0012 left them (the role stays: other databases of the cluster may use it).
UNGUARD_SQL = """
CREATE OR REPLACE FUNCTION crm_audit_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('crm.audit_maintenance', true) = 'on' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'crm_auditentry' THEN
        IF OLD.chain_seq IS NULL AND NEW.chain_seq IS NOT NULL
           AND (to_jsonb(NEW) - 'chain_seq' - 'chain_hash') = (to_jsonb(OLD) - 'chain_seq' - 'chain_hash') THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION '監査ログは追記専用です（% on % refused）', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE OR REPLACE FUNCTION crm_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('crm.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '追記専用の表 % は TRUNCATE できません', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

DROP FUNCTION IF EXISTS crm_may_maintain(text);
"""


class Migration(migrations.Migration):
    dependencies = [("crm", "0014_audit_entry_mac_covers_id")]

    operations = [migrations.RunSQL(ROLE_SQL + GUARD_SQL, UNGUARD_SQL)]
