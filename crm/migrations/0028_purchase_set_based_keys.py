"""The purchase's two keys (customer, team) checked per statement instead of per row (issue #18, bench/README.md).

PostgreSQL's foreign keys check every inserted row by itself at commit (a deferred trigger event per row and
key, one SPI query each): for a 10,000,000-row import that was 77–122 s of the commit, as much as the insert.
Here the same rules are kept by triggers the migration creates (the application role runs no DDL):

- purchases inserted or updated: after the statement, the distinct customer and team ids of the new rows
  (its transition table) are locked `FOR KEY SHARE` in one join each, the lock PostgreSQL's own key check
  takes, and their number compared with the number of distinct ids: one missing raises
  foreign_key_violation (Django's IntegrityError) naming it. Immediate (end of statement), not deferred:
  statement triggers cannot be deferred; Django and the import create the customer before its purchases.
- a customer or team deleted (or its id changed): a deferred constraint trigger per row checks at commit
  that no purchase still points at it — deferred like the old key, because erasure deletes the customer
  first and unlinks its purchases after (crm.retention.services.cascade). TRUNCATE of either table is
  refused while purchases point at rows of it (a foreign key refused it outright).

Concurrency (READ COMMITTED, the project's level; tests/crm/analytics/test_purchase_keys.py): an insert that
locked its customer makes a concurrent deletion wait for its commit, whose check then sees the new purchases
and fails; a deletion that came first makes the insert's lock wait, and once it commits the row is gone, the
lock finds nothing and the insert fails. Under REPEATABLE READ or SERIALIZABLE the deletion's check could
not see a purchase committed after its snapshot (PostgreSQL's own check has a cross-check snapshot for that,
a trigger has none), so a deletion of a customer or team at those levels is refused outright; nothing in
the project deletes at them.
"""

from django.db import migrations, models

def key_check(column: str, table: str, label: str) -> str:
    """PL/pgSQL: the distinct non-null `column` values of the new rows locked in `table`; one missing raises."""
    return f"""
    WITH ids AS MATERIALIZED (SELECT DISTINCT {column} AS id FROM new_rows WHERE {column} IS NOT NULL)
    SELECT (SELECT count(*) FROM ids),
           (SELECT count(*) FROM (SELECT 1 FROM {table} r WHERE r.id IN (SELECT id FROM ids)
                                  FOR KEY SHARE OF r) l)
      INTO wanted, locked;
    IF locked <> wanted THEN
        SELECT min(n.{column}) INTO missing FROM new_rows n
         WHERE n.{column} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {table} r WHERE r.id = n.{column});
        RAISE EXCEPTION 'insert or update on table "crm_purchase" violates foreign key "purchase_{label}"'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'crm_purchase', CONSTRAINT = 'purchase_{label}',
                  DETAIL = format('Key ({column})=(%s) is not present in table "{table}".', missing);
    END IF;"""


CHECK_NEW_ROWS = f"""
CREATE FUNCTION crm_purchase_keys_check() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    wanted bigint;
    locked bigint;
    missing bigint;
BEGIN{key_check("customer_id", "crm_customer", "customer")}{key_check("team_id", "crm_team", "team")}
    RETURN NULL;
END;
$$;
CREATE TRIGGER crm_purchase_keys_insert AFTER INSERT ON crm_purchase
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION crm_purchase_keys_check();
CREATE TRIGGER crm_purchase_keys_update AFTER UPDATE ON crm_purchase
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION crm_purchase_keys_check();
"""


def referenced_side(table: str, column: str, label: str) -> str:
    """The checks on the referenced table `table`: no purchase may keep pointing at a deleted row."""
    function = f"crm_purchase_{label}_gone"
    return f"""
CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION '{table} rows are deleted only at READ COMMITTED (purchases keep their keys by trigger)'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF EXISTS (SELECT 1 FROM crm_purchase p WHERE p.{column} = OLD.id) THEN
        RAISE EXCEPTION 'update or delete on table "{table}" violates foreign key "purchase_{label}" on table "crm_purchase"'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'crm_purchase', CONSTRAINT = 'purchase_{label}',
                  DETAIL = format('Key (id)=(%s) is still referenced from table "crm_purchase".', OLD.id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER {function}_delete AFTER DELETE ON {table} DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION {function}();
CREATE CONSTRAINT TRIGGER {function}_update AFTER UPDATE OF id ON {table} DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION {function}();
CREATE FUNCTION {function}_truncated() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM crm_purchase p WHERE p.{column} IS NOT NULL) THEN
        RAISE EXCEPTION 'cannot truncate "{table}": purchases reference it'
            USING ERRCODE = 'foreign_key_violation', HINT = 'Truncate crm_purchase in the same command.';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER {function}_truncate AFTER TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {function}_truncated();
"""


def referenced_side_reverse(table: str, label: str) -> str:
    function = f"crm_purchase_{label}_gone"
    return f"""
DROP TRIGGER IF EXISTS {function}_delete ON {table};
DROP TRIGGER IF EXISTS {function}_update ON {table};
DROP TRIGGER IF EXISTS {function}_truncate ON {table};
DROP FUNCTION IF EXISTS {function}();
DROP FUNCTION IF EXISTS {function}_truncated();
"""


FORWARD = (
    CHECK_NEW_ROWS
    + referenced_side("crm_customer", "customer_id", "customer")
    + referenced_side("crm_team", "team_id", "team")
)
REVERSE = (
    """
DROP TRIGGER IF EXISTS crm_purchase_keys_insert ON crm_purchase;
DROP TRIGGER IF EXISTS crm_purchase_keys_update ON crm_purchase;
DROP FUNCTION IF EXISTS crm_purchase_keys_check();
"""
    + referenced_side_reverse("crm_customer", "customer")
    + referenced_side_reverse("crm_team", "team")
)


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0027_rfm_score_slots"),
    ]

    operations = [
        # The triggers first: between the two steps nothing goes unchecked.
        migrations.RunSQL(FORWARD, REVERSE),
        migrations.AlterField(
            model_name="purchase",
            name="customer",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=models.deletion.SET_NULL,
                related_name="purchases",
                to="crm.customer",
                verbose_name="顧客",
            ),
        ),
        migrations.AlterField(
            model_name="purchase",
            name="team",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=models.deletion.PROTECT,
                related_name="+",
                to="crm.team",
                verbose_name="担当チーム",
            ),
        ),
    ]
