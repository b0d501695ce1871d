"""Audit entries are signed on insert and chained by a short sealing step after commit.

Before: every writer took the chain lock from its audit insert until its commit, so all audited writes in the
system ran one at a time. Now the writer inserts with `entry_mac` (HMAC of the entry) and no lock; the sealer
(crm.audit.audit_seal_pending) assigns chain_seq/chain_hash under the lock for a few milliseconds. The guard
trigger lets exactly that through: chain fields set once, from NULL, nothing else changed.
"""

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
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'crm_auditentry' THEN
        -- Nested: the head table has no chain_seq, and PL/pgSQL resolves fields when it runs an expression.
        IF OLD.chain_seq IS NULL AND NEW.chain_seq IS NOT NULL
           AND (to_jsonb(NEW) - 'chain_seq' - 'chain_hash') = (to_jsonb(OLD) - 'chain_seq' - 'chain_hash') THEN
            RETURN NEW;  -- sealing: the chain fields are set once
        END IF;
    END IF;
    RAISE EXCEPTION '監査ログは追記専用です（% on % refused）', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation',
              HINT = 'Maintenance must run with crm.audit_maintenance = on (crm.audit.audit_maintenance).';
END;
$$;
"""

SEAL_SCHEDULE = "監査ログの封印（ハッシュチェーン連結）"


def schedule_seal(apps, schema_editor):
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = interval_model.objects.get_or_create(every=1, period="minutes")
    task_model.objects.get_or_create(
        name=SEAL_SCHEDULE, defaults={"task": "crm.tasks.audit_seal", "interval": every_minute}
    )


def unschedule_seal(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=SEAL_SCHEDULE).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0008_drop_unused_auditlog_table"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditentry",
            name="entry_mac",
            field=models.CharField(
                blank=True, db_default="", editable=False, max_length=64, verbose_name="記録時署名"
            ),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(
                condition=models.Q(("chain_seq", None)), fields=["id"], name="auditentry_unsealed_idx"
            ),
        ),
        migrations.RunSQL(GUARD_SQL, migrations.RunSQL.noop),
        migrations.RunPython(schedule_seal, unschedule_seal),
    ]
