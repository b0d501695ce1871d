"""RFM scores in two slots made here, not by the application (issue #18, bench/README.md "RFM slots").

`crm_rfmscore` becomes a table partitioned by `slot`, with the two partitions `crm_rfmscore_s0` and
`crm_rfmscore_s1` created now, once, by the role that migrates. A run fills the slot the newest run does not
use and becomes the newest run when it commits (crm.analytics.services.rfm_compute): readers see the previous
complete run until then. The application's role (`crm_app`: SELECT, INSERT, UPDATE, DELETE, no TRUNCATE, no
DDL) empties the slot through one function:

- `crm_rfm_slot_clear()`, SECURITY DEFINER (runs as the migrating role, which owns the partitions), with a
  fixed `search_path`: it truncates the slot that the newest run does *not* use — never the one readers
  read — and deletes the runs that were stored in it, and returns the slot. It takes the slot's lock first
  and checks again that it is not live (a run filling it holds a lock on it until it commits). EXECUTE is
  revoked from PUBLIC; grant it to the application's role (README.md, "Database roles"). Where the grant is
  missing or the lock is not had within 2 s the application deletes the slot's rows instead (slower, same
  outcome).

Scores keep no foreign-key constraint (each row's check cost about 10 s a run): a statement trigger on
`crm_customer` deletes the scores of deleted customers, and the run holds its slot in SHARE ROW EXCLUSIVE
mode while filling it, so a customer's deletion (which deletes from both slots) waits for the run and then
removes the new scores too. The two newest runs keep their scores (the newest in slot 0); older runs go.
"""

import django.db.models.deletion
from django.db import migrations, models

FORWARD_SQL = """
UPDATE crm_rfmrun SET slot = 1 WHERE id = (SELECT id FROM crm_rfmrun ORDER BY id DESC OFFSET 1 LIMIT 1);

CREATE TABLE crm_rfmscore_new (
    id bigint NOT NULL,
    recency_days integer NOT NULL,
    frequency integer NOT NULL,
    monetary numeric(16, 2) NOT NULL,
    r_score smallint NOT NULL CONSTRAINT crm_rfmscore_r_score_check CHECK (r_score >= 0),
    f_score smallint NOT NULL CONSTRAINT crm_rfmscore_f_score_check CHECK (f_score >= 0),
    m_score smallint NOT NULL CONSTRAINT crm_rfmscore_m_score_check CHECK (m_score >= 0),
    segment varchar(16) NOT NULL,
    customer_id bigint NOT NULL,
    run_id bigint NOT NULL,
    slot smallint NOT NULL CONSTRAINT crm_rfmscore_slot_check CHECK (slot >= 0)
) PARTITION BY LIST (slot);
CREATE TABLE crm_rfmscore_s0 PARTITION OF crm_rfmscore_new FOR VALUES IN (0);
CREATE TABLE crm_rfmscore_s1 PARTITION OF crm_rfmscore_new FOR VALUES IN (1);

INSERT INTO crm_rfmscore_new (id, recency_days, frequency, monetary, r_score, f_score, m_score, segment,
                              customer_id, run_id, slot)
SELECT s.id, s.recency_days, s.frequency, s.monetary, s.r_score, s.f_score, s.m_score, s.segment,
       s.customer_id, s.run_id, r.slot
FROM crm_rfmscore s JOIN crm_rfmrun r ON r.id = s.run_id
WHERE r.id IN (SELECT id FROM crm_rfmrun ORDER BY id DESC LIMIT 2)
ORDER BY r.slot, s.customer_id;

DROP TABLE crm_rfmscore;
DELETE FROM crm_rfmrun WHERE id NOT IN (SELECT id FROM crm_rfmrun ORDER BY id DESC LIMIT 2);
ALTER TABLE crm_rfmscore_new RENAME TO crm_rfmscore;
CREATE SEQUENCE crm_rfmscore_id_seq OWNED BY crm_rfmscore.id;
SELECT setval('crm_rfmscore_id_seq', coalesce((SELECT max(id) FROM crm_rfmscore), 0) + 1, false);
ALTER TABLE crm_rfmscore ALTER COLUMN id SET DEFAULT nextval('crm_rfmscore_id_seq');
ALTER TABLE crm_rfmscore ADD CONSTRAINT crm_rfmscore_pkey PRIMARY KEY (id, slot);
ALTER TABLE crm_rfmscore ADD CONSTRAINT uniq_rfm_customer_run_slot UNIQUE (customer_id, run_id, slot);

DO $do$
BEGIN
EXECUTE format($f$
CREATE FUNCTION %1$I.crm_rfm_scores_of_deleted_customers() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    DELETE FROM %1$I.crm_rfmscore s USING deleted_customers d WHERE s.customer_id = d.id;
    RETURN NULL;
END
$body$;

CREATE FUNCTION %1$I.crm_rfm_slot_clear() RETURNS smallint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '2s'
AS $body$
DECLARE
    live smallint;
    target smallint;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'crm_rfm_slot_clear() runs in READ COMMITTED only'
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    SELECT r.slot INTO live FROM %1$I.crm_rfmrun r ORDER BY r.id DESC LIMIT 1;
    target := CASE WHEN live = 0 THEN 1 ELSE 0 END;
    IF target = 0 THEN
        LOCK TABLE %1$I.crm_rfmscore_s0 IN ACCESS EXCLUSIVE MODE;
    ELSE
        LOCK TABLE %1$I.crm_rfmscore_s1 IN ACCESS EXCLUSIVE MODE;
    END IF;
    -- A run that filled this slot may have committed while the lock was awaited: then it is live.
    IF (SELECT r.slot FROM %1$I.crm_rfmrun r ORDER BY r.id DESC LIMIT 1) IS DISTINCT FROM live THEN
        RAISE EXCEPTION 'RFM slot %% became live meanwhile', target USING ERRCODE = 'lock_not_available';
    END IF;
    IF target = 0 THEN
        TRUNCATE %1$I.crm_rfmscore_s0;
    ELSE
        TRUNCATE %1$I.crm_rfmscore_s1;
    END IF;
    DELETE FROM %1$I.crm_rfmrun WHERE slot = target;
    RETURN target;
END
$body$;
$f$, current_schema());
EXECUTE format('REVOKE ALL ON FUNCTION %I.crm_rfm_slot_clear() FROM PUBLIC', current_schema());
END
$do$;

CREATE TRIGGER crm_customer_rfm_scores AFTER DELETE ON crm_customer
    REFERENCING OLD TABLE AS deleted_customers FOR EACH STATEMENT
    EXECUTE FUNCTION crm_rfm_scores_of_deleted_customers();
"""

# Back to one table with its foreign keys (the scores of both slots kept).
REVERSE_SQL = """
DROP TRIGGER crm_customer_rfm_scores ON crm_customer;
DROP FUNCTION crm_rfm_scores_of_deleted_customers();
DROP FUNCTION crm_rfm_slot_clear();
ALTER TABLE crm_rfmscore RENAME TO crm_rfmscore_slots;
ALTER TABLE crm_rfmscore_slots RENAME CONSTRAINT crm_rfmscore_pkey TO crm_rfmscore_slots_pkey;
CREATE TABLE crm_rfmscore (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    recency_days integer NOT NULL,
    frequency integer NOT NULL,
    monetary numeric(16, 2) NOT NULL,
    r_score smallint NOT NULL CHECK (r_score >= 0),
    f_score smallint NOT NULL CHECK (f_score >= 0),
    m_score smallint NOT NULL CHECK (m_score >= 0),
    segment varchar(16) NOT NULL,
    customer_id bigint NOT NULL REFERENCES crm_customer (id) DEFERRABLE INITIALLY DEFERRED,
    run_id bigint NOT NULL REFERENCES crm_rfmrun (id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT uniq_rfm_run_customer UNIQUE (run_id, customer_id)
);
INSERT INTO crm_rfmscore (id, recency_days, frequency, monetary, r_score, f_score, m_score, segment,
                          customer_id, run_id)
SELECT id, recency_days, frequency, monetary, r_score, f_score, m_score, segment, customer_id, run_id
FROM crm_rfmscore_slots;
SELECT setval(pg_get_serial_sequence('crm_rfmscore', 'id'), coalesce((SELECT max(id) FROM crm_rfmscore), 0) + 1,
              false);
DROP TABLE crm_rfmscore_slots;
CREATE INDEX rfm_customer_run_idx ON crm_rfmscore (customer_id, run_id);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0026_merge_search_indexes_purchase_key"),
    ]

    operations = [
        migrations.AddField(
            model_name="rfmrun",
            name="slot",
            field=models.PositiveSmallIntegerField(default=0, verbose_name="格納スロット"),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(FORWARD_SQL, REVERSE_SQL)],
            state_operations=[
                migrations.RemoveConstraint(model_name="rfmscore", name="uniq_rfm_run_customer"),
                migrations.RemoveIndex(model_name="rfmscore", name="rfm_customer_run_idx"),
                migrations.AddField(
                    model_name="rfmscore",
                    name="slot",
                    field=models.PositiveSmallIntegerField(default=0, verbose_name="格納スロット"),
                    preserve_default=False,
                ),
                migrations.AlterField(
                    model_name="rfmscore",
                    name="customer",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="crm.customer",
                        verbose_name="顧客",
                    ),
                ),
                migrations.AlterField(
                    model_name="rfmscore",
                    name="run",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="scores",
                        to="crm.rfmrun",
                        verbose_name="計算",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="rfmscore",
                    constraint=models.UniqueConstraint(
                        fields=("customer", "run", "slot"), name="uniq_rfm_customer_run_slot"
                    ),
                ),
            ],
        ),
    ]
