"""Erasure reaches the consent ledger's evidence.

The ledger keeps an erased person's rows as proof of consent (GDPR Art. 7(1), 17(3)(e)), but their evidence
(source address, user agent, cookie id) is the person's data. Erasure empties those three columns, keeps a
keyed hash of them (`evidence_hash`) and records `erased_at` (consent.services.consent_evidence_erase).

The append-only trigger of 0002 refused every UPDATE; it now lets exactly that change through, and only when
the transaction has set `consent.evidence_erasure = on` (the erasure service sets it with set_config(…,
true) around its one UPDATE and turns it off again): the row must not have been erased before, the three
evidence columns must become empty, `erased_at` must be set, and every other column must stay as it was
(compared as JSON with the evidence columns removed, so a column added later is protected without editing
this function). DELETE and every other UPDATE are refused as before.

Why a session setting is acceptable: like crm.allow_truncate it guards against mistakes (an ORM update, a
stray psql statement), not against someone who can run arbitrary SQL as the table owner (who could drop the
trigger). What the setting opens is narrow: it can destroy evidence — what erasure must do anyway — but it
cannot forge or alter a consent (purpose, version, action, times, subject stay immutable), cannot re-erase a
row with a different hash, and leaves `erased_at` on the row. The erasure service audits each use.
"""

from django.db import migrations, models

EVIDENCE_COLUMNS = "ARRAY['source_ip', 'user_agent', 'visitor_id', 'evidence_hash', 'erased_at']"

FUNCTION_V2 = f"""
CREATE OR REPLACE FUNCTION consent_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'consent_consentevent'
       AND current_setting('consent.evidence_erasure', true) = 'on' THEN
        -- Nested: the field references below only compile for the ledger's row type.
        IF OLD.erased_at IS NULL AND NEW.erased_at IS NOT NULL
           AND NEW.source_ip = '' AND NEW.user_agent = '' AND NEW.visitor_id = ''
           AND OLD.evidence_hash = '' AND NEW.evidence_hash ~ '^[0-9a-f]{{64}}$'
           AND (to_jsonb(NEW) - {EVIDENCE_COLUMNS}) = (to_jsonb(OLD) - {EVIDENCE_COLUMNS}) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'append-only table %: % refused (consent ledger / purpose versions are immutable)',
        TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""

# As created by 0002_ledger_guard.
FUNCTION_V1 = """
CREATE OR REPLACE FUNCTION consent_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'append-only table %: % refused (consent ledger / purpose versions are immutable)',
        TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("consent", "0005_truncate_guard")]

    operations = [
        migrations.RemoveConstraint(model_name="consentevent", name="consent_event_has_subject"),
        migrations.AddField(
            model_name="consentevent",
            name="erased_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="証跡の消去日時"),
        ),
        migrations.AddField(
            model_name="consentevent",
            name="evidence_hash",
            field=models.CharField(
                blank=True, default="", max_length=64, verbose_name="証跡の鍵付きハッシュ（消去時）"
            ),
        ),
        migrations.AddConstraint(
            model_name="consentevent",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("customer__isnull", False),
                    models.Q(("visitor_id", ""), _negated=True),
                    ("erased_at__isnull", False),
                    _connector="OR",
                ),
                name="consent_event_has_subject",
            ),
        ),
        migrations.RunSQL(FUNCTION_V2, FUNCTION_V1),
    ]
