"""The audit trail becomes append-only in the database, and its newest link is kept signed.

- AuditChainHead: one row holding the newest (seq, hash) of the chain, signed with AUDIT_CHAIN_KEY; set here
  from the newest existing entry, then advanced by AuditEntry._save_table in the same transaction.
- A trigger refuses UPDATE and DELETE on crm_auditentry, and DELETE on crm_auditchainhead, unless the
  session (or transaction) has set `crm.audit_maintenance = 'on'` (crm.audit.audit_maintenance()).
  Whoever can set that can also tamper, so this is a guard against mistakes and casual edits; the hash
  chain is what detects tampering. TRUNCATE is not guarded (test databases are flushed with it); the head
  makes a truncated trail show as missing entries.
"""

import hashlib
import hmac

from django.conf import settings
from django.db import migrations, models

GUARD_SQL = """
CREATE OR REPLACE FUNCTION crm_audit_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('crm.audit_maintenance', true) = 'on' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '監査ログは追記専用です（% on % refused）', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation',
              HINT = 'Maintenance must run with crm.audit_maintenance = on (crm.audit.audit_maintenance).';
END;
$$;
CREATE TRIGGER crm_auditentry_append_only
    BEFORE UPDATE OR DELETE ON crm_auditentry
    FOR EACH ROW EXECUTE FUNCTION crm_audit_guard();
CREATE TRIGGER crm_auditchainhead_keep
    BEFORE DELETE ON crm_auditchainhead
    FOR EACH ROW EXECUTE FUNCTION crm_audit_guard();
"""

UNGUARD_SQL = """
DROP TRIGGER IF EXISTS crm_auditchainhead_keep ON crm_auditchainhead;
DROP TRIGGER IF EXISTS crm_auditentry_append_only ON crm_auditentry;
DROP FUNCTION IF EXISTS crm_audit_guard();
"""


def head_from_newest_entry(apps, schema_editor):
    """Start the head at the newest chained entry of an existing trail (same signature as the model's)."""
    entry_model = apps.get_model("crm", "AuditEntry")
    head_model = apps.get_model("crm", "AuditChainHead")
    last = (
        entry_model.objects.exclude(chain_seq=None)
        .order_by("-chain_seq")
        .values_list("chain_seq", "chain_hash")
        .first()
    )
    if last is None:
        return
    seq, chain_hash = last
    mac = hmac.new(
        settings.AUDIT_CHAIN_KEY.encode(), f"audit-head\x1e{seq}\x1e{chain_hash}".encode(), hashlib.sha256
    ).hexdigest()
    head_model.objects.create(pk=1, seq=seq, hash=chain_hash, mac=mac)


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0003_purchases_events"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditChainHead",
            fields=[
                (
                    "id",
                    models.PositiveSmallIntegerField(
                        default=1, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("seq", models.BigIntegerField(verbose_name="最終連番")),
                ("hash", models.CharField(max_length=64, verbose_name="最終チェーンハッシュ")),
                ("mac", models.CharField(max_length=64, verbose_name="署名")),
                ("updated_at", models.DateTimeField(auto_now=True, verbose_name="更新日時")),
            ],
            options={
                "verbose_name": "監査ログの末尾",
                "verbose_name_plural": "監査ログの末尾",
                "constraints": [
                    models.CheckConstraint(condition=models.Q(("id", 1)), name="auditchainhead_singleton")
                ],
            },
        ),
        migrations.RunPython(head_from_newest_entry, migrations.RunPython.noop),
        migrations.RunSQL(GUARD_SQL, UNGUARD_SQL),
    ]
