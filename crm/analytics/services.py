"""Writes of the analytics area: purchase imports, RFM runs, CLV fits. Each bulk write is set-based SQL and
writes its own summary audit entry (auditlog's signals do not see it): ids as ranges and counts, no value.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import EmptyResultSet, PermissionDenied
from django.db import DatabaseError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from crm.analytics import clv, imports, rules
from crm.analytics.models import ClvFit, ClvScore, PurchaseImport, RfmRun, RfmScore
from crm.classification import REDACTED, audit_masked_fields
from crm.models import AuditEntry, Customer, Purchase, Team
from crm.permissions import team_open_to
from crm.queue import task_enqueue

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.core.files.uploadedfile import UploadedFile


PURCHASE_IMPORT_TASK = "crm.analytics.purchase_import"
logger = logging.getLogger("crm.analytics")
TOKYO = ZoneInfo("Asia/Tokyo")


def import_dir() -> Path:
    """Where uploaded files wait for their task (deleted once imported): ANALYTICS_IMPORT_DIR."""
    path = Path(settings.ANALYTICS_IMPORT_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def import_file_path(batch_id: int) -> Path:
    return import_dir() / f"purchase-import-{batch_id}.csv"


def purchase_import_create(
    *, team: Team, upload: UploadedFile, all_or_nothing: bool, actor: User
) -> PurchaseImport:
    """Accept an uploaded purchases file for `team` (the admin): store it, record the batch, enqueue the
    import after commit. Refused unless `actor` may change the team's customers (the import creates
    customers there)."""
    if not team_open_to(actor, "change", team.pk):
        raise PermissionDenied("team")
    with transaction.atomic():
        batch = PurchaseImport.objects.create(
            team=team,
            created_by=actor,
            file_name=Path(upload.name or "").name[:200],
            all_or_nothing=all_or_nothing,
            bytes_total=upload.size or 0,
        )
        with import_file_path(batch.pk).open("wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        # By name (crm.analytics.tasks imports this module): enqueued once the batch row is committed.
        transaction.on_commit(lambda: task_enqueue(PURCHASE_IMPORT_TASK, batch.pk))
    return batch


@contextlib.contextmanager
def _advisory_lock(key: int, *, wait: bool) -> Iterator[bool]:
    """A session advisory lock on `key` (released on exit, or when the connection ends): with `wait`,
    waits for it; without, tells whether it was free."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {'pg_advisory_lock' if wait else 'pg_try_advisory_lock'}(%s)", [key])
        row = cursor.fetchone()
    taken = wait or bool(row[0])
    try:
        yield taken
    finally:
        if taken:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def purchase_import_run(*, batch_id: int, stream: IO[bytes], actor: User | None = None) -> PurchaseImport:
    """Import the purchases CSV `stream` into the batch's team (the task and `manage.py import_purchases`).

    Safe to run twice: a finished batch is left as it is, a batch another process holds is skipped, and
    every row is inserted with ON CONFLICT DO NOTHING on its import key. Must run outside a transaction
    for its progress to be seen while it loads (each staging chunk commits by itself).
    """
    # A redelivered task finds the batch taken and does nothing.
    with _advisory_lock(zlib.crc32(f"crm.analytics.import:{batch_id}".encode()), wait=False) as taken:
        batch = PurchaseImport.objects.get(pk=batch_id)
        if not taken or batch.status in (PurchaseImport.Status.DONE, PurchaseImport.Status.REFUSED):
            return batch
        _progress(batch, status=PurchaseImport.Status.RUNNING, started_at=timezone.now())
        start = time.perf_counter()
        imports.stage_create()
        try:
            try:
                _names, staged = imports.stage_load(
                    stream,
                    progress=lambda r: _progress(
                        batch, bytes_read=r.bytes_read, rows_total=r.rows + r.structural_errors
                    ),
                )
            except imports.HeaderError as exc:
                _progress(
                    batch,
                    status=PurchaseImport.Status.REFUSED,
                    errors=[{"line": 1, "field": exc.column, "code": exc.code}],
                    finished_at=timezone.now(),
                )
                return PurchaseImport.objects.get(pk=batch_id)
            _import_staged(batch, staged, actor, start)
        except Exception:
            _progress(batch, status=PurchaseImport.Status.FAILED, finished_at=timezone.now())
            raise
        finally:
            imports.stage_drop()
    return PurchaseImport.objects.get(pk=batch_id)


def _progress(batch: PurchaseImport, **values: Any) -> None:
    PurchaseImport.objects.filter(pk=batch.pk).update(**values)


def _import_staged(
    batch: PurchaseImport, staged: imports.StageResult, actor: User | None, start: float
) -> None:
    """Validate the staged rows, then (unless refused whole) create missing customers and insert purchases,
    all in one transaction with the batch's outcome and its audit entries."""
    phases = {"staged": seconds_since(start)}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '256MB'")
        imports.parse(channels=list(Customer.Channel.values), default_channel=Customer.Channel.IMPORT)
        invalid, parse_errors = imports.parse_errors()
        phases["checked"] = seconds_since(start)
        invalid += staged.structural_errors
        errors = sorted(staged.errors + parse_errors)[: imports.ERRORS_KEPT]
        outcome: dict[str, Any] = {
            "rows_total": staged.rows + staged.structural_errors,
            "bytes_read": staged.bytes_read,
            "rows_invalid": invalid,
            "errors": [{"line": line, "field": field, "code": code} for line, field, code in errors],
            "finished_at": timezone.now(),
        }
        if batch.all_or_nothing and invalid:
            _progress(batch, status=PurchaseImport.Status.REFUSED, **outcome)
            return
        created = _customers_create(cursor, batch)
        phases["customers"] = seconds_since(start)
        inserted = _purchases_insert(cursor, batch)
        phases["purchases"] = seconds_since(start)
        # Cumulative seconds at the end of each phase (the foreign-key checks run at the commit after).
        logger.info("purchase import %s: %s", batch.pk, phases)
        valid = staged.rows - (invalid - staged.structural_errors)
        _batch_audit(Customer, batch, created, actor)
        _batch_audit(Purchase, batch, inserted, actor)
        _progress(
            batch,
            status=PurchaseImport.Status.DONE,
            customers_created=sum(b - a + 1 for a, b in created),
            rows_inserted=sum(b - a + 1 for a, b in inserted),
            rows_duplicate=valid - sum(b - a + 1 for a, b in inserted),
            **outcome,
        )


def _ranges_of(insert_sql: str) -> str:
    """Wrap an INSERT … RETURNING id so the statement answers the inserted ids as [first, last] ranges, not
    one row per id (merge them with `ranges_merged`).

    Ids are grouped into blocks of 65,536 (one hash aggregate, no sort): a block whose ids have no gap is
    one range; only blocks with gaps (ids another session took meanwhile) are cut into islands, which
    sorts just their ids. Sorting all ten million ids of a large import to number them took longer than
    the aggregate (about 10 s against 2 s)."""
    return (
        f"WITH ins AS ({insert_sql}), "
        "blocks AS (SELECT id >> 16 AS block, min(id) AS first, max(id) AS last, count(*) AS n "
        "FROM ins GROUP BY 1) "
        "SELECT first, last FROM blocks WHERE last - first + 1 = n "
        "UNION ALL "
        "SELECT min(id), max(id) FROM (SELECT id, id - row_number() OVER (ORDER BY id) AS island FROM ins "
        "WHERE id >> 16 IN (SELECT block FROM blocks WHERE last - first + 1 <> n)) i GROUP BY island"
    )


def ranges_merged(rows: list[tuple[int, int]]) -> list[list[int]]:
    """[[first, last], …] in order, touching ranges joined (a range split at a block's edge is one)."""
    ranges: list[list[int]] = []
    for first, last in sorted((int(a), int(b)) for a, b in rows):
        if ranges and first == ranges[-1][1] + 1:
            ranges[-1][1] = last
        else:
            ranges.append([first, last])
    return ranges


def _customers_create(cursor: Any, batch: PurchaseImport) -> list[list[int]]:
    """Create, in the batch's team, a customer for every external id of a valid row that the team lacks.

    The values are those the model gives a new customer (Django computes each column's stored value from
    a template instance: defaults, empty encrypted fields, blind indexes), with channel インポート; only
    the external id varies, and it passed the model's own rules (length, My Number) in parse()."""
    now = timezone.now()
    template = Customer(
        team_id=batch.team_id,
        external_id="",
        status=Customer.Status.ACTIVE,
        collection_channel=Customer.Channel.IMPORT,
        collected_at=now,
        created_at=now,
        updated_at=now,
    )
    fields = [f for f in Customer._meta.concrete_fields if not f.primary_key and f.name != "external_id"]
    values = [f.get_db_prep_save(getattr(template, f.attname), connection) for f in fields]
    table = Customer._meta.db_table
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    team_col = connection.ops.quote_name(Customer._meta.get_field("team").column)
    ext_col = connection.ops.quote_name(Customer._meta.get_field("external_id").column)
    insert = (
        f"INSERT INTO {table} ({columns}, {ext_col}) "
        f"SELECT {', '.join(['%s'] * len(values))}, d.ext "
        f"FROM (SELECT DISTINCT ext FROM {imports.PARSED} WHERE errors = '{{}}') d "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} c WHERE c.{team_col} = %s AND c.{ext_col} = d.ext) "
        "ON CONFLICT DO NOTHING RETURNING id"
    )
    cursor.execute(_ranges_of(insert), [*values, batch.team_id])
    return ranges_merged(cursor.fetchall())


def _purchases_insert(cursor: Any, batch: PurchaseImport) -> list[list[int]]:
    """Insert the valid rows as purchases of the team's customers, each with its import key (the md5 of
    team, external id, instant in microseconds, amount, quantity, category, channel and the occurrence of
    that same row in the file); a (customer, purchased_at, key) already in the table is skipped (ON
    CONFLICT DO NOTHING).

    In (customer, purchased_at) order: the window that numbers the occurrences partitions by the customer
    (one per external id of the team) and the instant first, so the rows reach the table already sorted (no
    second sort), and the entries of the unique (customer, purchased_at, key) index, the table's largest,
    are added in one ordered sweep instead of on random pages; the customers' foreign-key checks read the
    customer table in order too."""
    purchase, customer = Purchase._meta.db_table, Customer._meta.db_table
    insert = f"""
        INSERT INTO {purchase} (customer_id, team_id, order_no, amount, quantity, category, currency, channel,
                                purchased_at, import_key, created_at)
        SELECT k.customer_id, %(team)s, NULL, k.amount, k.quantity, k.category, 'JPY', k.channel, k.ts,
               md5(concat_ws('|', %(team)s::text, k.ext,
                             (extract(epoch FROM k.ts) * 1000000)::bigint::text, k.amount::text,
                             k.quantity::text, k.category, k.channel, k.occurrence::text))::uuid,
               now()
        FROM (
            SELECT p.ts, p.ext, p.amount, p.quantity, p.category, p.channel, c.id AS customer_id,
                   row_number() OVER (
                       PARTITION BY c.id, p.ts, p.amount, p.quantity, p.category, p.channel ORDER BY p.line
                   ) AS occurrence
            FROM {imports.PARSED} p
            JOIN {customer} c ON c.team_id = %(team)s AND c.external_id = p.ext
            WHERE p.errors = '{{}}'
        ) k
        ORDER BY k.customer_id, k.ts
        ON CONFLICT (customer_id, purchased_at, import_key) DO NOTHING RETURNING id
    """
    cursor.execute(_ranges_of(insert), {"team": batch.team_id})
    return ranges_merged(cursor.fetchall())


def _batch_audit(
    model: type[Any], batch: PurchaseImport, ranges: list[list[int]], actor: User | None
) -> None:
    """One audit entry for the rows of `model` a batch inserted: ids as ranges, the count, the batch; the
    personal fields named and redacted (as for a single row), never a value."""
    if not ranges:
        return
    count = sum(b - a + 1 for a, b in ranges)
    AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(model),
        object_pk=f"purchase-import:{batch.pk}",
        object_id=None,
        object_repr=f"{model._meta.verbose_name} {count}件（購買取込 #{batch.pk}）",
        action=AuditEntry.Action.CREATE,
        changes={name: ["None", REDACTED] for name in sorted(audit_masked_fields(model._meta.label))},
        actor=actor,
        additional_data={
            "purchase_import": {"batch": batch.pk, "team": batch.team_id, "count": count, "id_ranges": ranges}
        },
    )


def seconds_since(start: float) -> float:
    return round(time.perf_counter() - start, 3)


# --- RFM ---------------------------------------------------------------------------------------------------


def _day_end(day: dt.date) -> dt.datetime:
    """The first instant after `day` in Japan (purchases on or before `day` are those before it)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=TOKYO)


def _eligible_sql(eligible: QuerySet[Customer]) -> tuple[str, tuple[Any, ...]]:
    """The eligible customers' ids as SQL (the queryset compiled by Django, rule and gate included)."""
    try:
        sql, params = eligible.order_by().values("pk").query.sql_with_params()
    except EmptyResultSet:  # the rule selects nobody (e.g. an unpublished purpose)
        return "SELECT NULL::bigint WHERE false", ()
    return sql, tuple(params)


def _score_sql(method: str, column: str, direction: str) -> str:
    """A score 1..bins of `column`: NTILE (equal-sized groups, ties split by customer id) or, with
    method "cume_dist", the cumulative share (equal values always share a score)."""
    if method == "cume_dist":
        return (
            f"LEAST(%(bins)s, GREATEST(1, ceil(cume_dist() OVER (ORDER BY {column} {direction}) "
            "* %(bins)s)))::int"
        )
    return f"ntile(%(bins)s) OVER (ORDER BY {column} {direction}, customer_id)"


def segment_case(bins_param: str = "%(bins)s") -> str:
    """The segment rule of crm.analytics.rules.SEGMENT_RULES over r, f, m as one SQL expression: the
    segment of each of the 125 cells of the 1–5 scale (named by rules.rfm_segment, so Python and SQL cannot
    disagree), looked up by the cell's position; the scale by integer arithmetic (ceil(score × 5 / bins) for
    scores 1..bins). A ten-branch CASE of numeric ceil/LEAST/GREATEST cost about 4 s per million scores
    (EXPLAIN ANALYZE, bench/README.md); this is one array subscript."""

    def five(score: str) -> str:
        return f"(({score})::int * 5 + ({bins_param})::int - 1) / ({bins_param})::int"

    cells = itertools.product(range(1, 6), repeat=3)
    names = ", ".join(f"'{rules.rfm_segment(r, f, m, bins=5)}'" for r, f, m in cells)
    return f"(ARRAY[{names}]::varchar[])[({five('r')} - 1) * 25 + ({five('f')} - 1) * 5 + {five('m')}]"


RFM_METHODS = ("ntile", "cume_dist")
RFM_LOCK = zlib.crc32(b"crm.analytics.rfm")  # one run at a time (a session advisory lock)
RFM_SLOT_CLEAR = "crm_rfm_slot_clear"  # crm migration 0027: SECURITY DEFINER, truncates the slot not live
# Why the slot function could not empty the slot: its lock not had within 2 s (a reader of the previous run
# still on it), or no EXECUTE grant; the run deletes the slot's rows instead.
_SLOT_CLEAR_REFUSED = {"55P03": "lock_not_available", "42501": "insufficient_privilege"}


def rfm_slot_table(slot: int) -> str:
    """The partition of `crm_rfmscore` holding slot 0 or 1 (made by crm migration 0027)."""
    if slot not in (0, 1):
        raise ValueError("slot")
    return f"{RfmScore._meta.db_table}_s{slot}"


def _rfm_slot_clear() -> tuple[int, bool]:
    """Empty the slot the newest run does not use, in a transaction of its own (its lock is brief and
    readers only wait for it if they read that slot): the function of migration 0027 truncates it and
    deletes its runs. Returns the slot and whether it is empty; when the function was refused (no grant,
    or its lock not had within 2 s), the caller deletes the slot's rows in its own transaction instead."""
    live = RfmRun.objects.order_by("-pk").values_list("slot", flat=True).first()
    target = 1 - live if live is not None else 0
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SELECT {RFM_SLOT_CLEAR}()")
            (target,) = cursor.fetchone()
    except DatabaseError as exc:
        code = _SLOT_CLEAR_REFUSED.get(getattr(exc.__cause__, "sqlstate", None) or "")
        if code is None:
            raise
        logger.warning("RFM slot %s not truncated (%s): its rows are deleted instead", target, code)
        return target, False
    return target, True


def rfm_compute(
    *,
    eligible: QuerySet[Customer],
    as_of: dt.date,
    bins: int = rules.DEFAULT_BINS,
    method: str = "ntile",
    purpose_code: str = "analytics",
    actor: User | None = None,
) -> RfmRun:
    """Score every eligible customer with a purchase on or before `as_of` in one INSERT … SELECT.

    Recency: days from the last purchase day to `as_of`; frequency: distinct purchase days (same-day
    purchases count once, as in the CLV); monetary: total spend. Days are Japanese calendar days. Scores are
    1..bins, higher better (recent buyers score high). `eligible` is the use rule's answer
    (crm.analytics.eligibility): customers outside it are never scored.

    Stored in the slot the newest run does not use (bench/README.md, "RFM slots"): emptied first (the run
    before last goes with it), then filled, with the run row and its audit entry, in one transaction, so
    the run and all its scores become the newest at its commit and readers never see a part of it. The
    slot is locked in SHARE ROW EXCLUSIVE mode while it fills: readers pass, a customer's deletion (which
    deletes their scores in both slots) waits and then deletes the new score too. Scores are inserted in
    customer order: the slot's two indexes (id, and customer) grow at their right-hand edge. One run at a
    time (an advisory lock).
    """
    if not 2 <= bins <= rules.MAX_BINS or method not in RFM_METHODS:
        raise ValueError("bins or method")
    start = time.perf_counter()
    eligible_sql, eligible_params = _eligible_sql(eligible)
    purchase = Purchase._meta.db_table
    with _advisory_lock(RFM_LOCK, wait=True):
        slot, emptied = _rfm_slot_clear()
        table = rfm_slot_table(slot)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
            if not emptied:
                cursor.execute(f"DELETE FROM {table}")
                RfmRun.objects.filter(slot=slot).delete()
            cursor.execute("SET LOCAL work_mem = '256MB'")
            run = RfmRun.objects.create(
                as_of=as_of, bins=bins, method=method, purpose_code=purpose_code, slot=slot
            )
            params: dict[str, Any] = {
                "run": run.pk,
                "slot": slot,
                "bins": bins,
                "as_of": as_of,
                "end": _day_end(as_of),
            }
            params.update({f"e{i}": value for i, value in enumerate(eligible_params)})
            eligible_named = eligible_sql % tuple(f"%(e{i})s" for i in range(len(eligible_params)))
            cursor.execute(
                f"""
                INSERT INTO {table} (run_id, slot, customer_id, recency_days, frequency, monetary,
                                     r_score, f_score, m_score, segment)
                SELECT %(run)s, %(slot)s, customer_id, recency_days, frequency, monetary, r, f, m,
                       {segment_case()}
                FROM (
                    SELECT customer_id, recency_days, frequency, monetary,
                           {_score_sql(method, "recency_days", "DESC")} AS r,
                           {_score_sql(method, "frequency", "ASC")} AS f,
                           {_score_sql(method, "monetary", "ASC")} AS m
                    FROM (
                        SELECT customer_id, %(as_of)s::date - max(day) AS recency_days,
                               count(*) AS frequency, sum(spend) AS monetary
                        FROM (
                            SELECT customer_id, (purchased_at AT TIME ZONE 'Asia/Tokyo')::date AS day,
                                   sum(amount) AS spend
                            FROM {purchase}
                            WHERE purchased_at < %(end)s AND customer_id IN ({eligible_named})
                            GROUP BY 1, 2
                        ) days
                        GROUP BY customer_id
                    ) per_customer
                ) scored
                ORDER BY customer_id
                """,
                params,
            )
            run.customers = cursor.rowcount
            run.boundaries = _rfm_boundaries(cursor, table)
            run.seconds = seconds_since(start)
            run.save(update_fields=["customers", "boundaries", "seconds"])
            _scores_audit(RfmScore, f"rfm-run:{run.pk}", run.customers, actor, {"run": run.pk})
    return run


def _rfm_boundaries(cursor: Any, table: str) -> dict[str, dict[str, list[float]]]:
    """The range of each input behind each score of the run in the slot `table` (one GROUPING SETS
    statement)."""
    cursor.execute(
        f"""
        SELECT r_score, f_score, m_score, min(recency_days), max(recency_days), min(frequency),
               max(frequency), min(monetary), max(monetary)
        FROM {table} GROUP BY GROUPING SETS ((r_score), (f_score), (m_score))
        """
    )
    out: dict[str, dict[str, list[float]]] = {"r": {}, "f": {}, "m": {}}
    for r, f, m, r_lo, r_hi, f_lo, f_hi, m_lo, m_hi in cursor.fetchall():
        if r is not None:
            out["r"][str(r)] = [r_lo, r_hi]
        elif f is not None:
            out["f"][str(f)] = [f_lo, f_hi]
        else:
            out["m"][str(m)] = [float(m_lo), float(m_hi)]
    return out


def _scores_audit(model: type[Any], key: str, count: int, actor: User | None, extra: dict[str, Any]) -> None:
    """One audit entry for a run's scores (derived personal data written in bulk): the run and the count."""
    AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(model),
        object_pk=key,
        object_id=None,
        object_repr=f"{model._meta.verbose_name} {count}件",
        action=AuditEntry.Action.CREATE,
        changes={name: ["None", REDACTED] for name in sorted(audit_masked_fields(model._meta.label))},
        actor=actor,
        additional_data={"analytics": {**extra, "count": count}},
    )


# --- CLV -----------------------------------------------------------------------------------------------


CLV_STATS = "analytics_clv_customers"
CLV_GROUPS = "analytics_clv_groups"
# The distinct row (x, t_x, T) as one bigint, each in 21 bits (x distinct days and t_x, T in days are below
# 2^21 = 2,097,152 for any date of a four-digit year): the customers join their row's predictions on one
# column, which PostgreSQL estimates right (a hash join; on three columns it expected 1.5 % of the rows and
# sorted both sides for a merge join).
CLV_GROUP_KEY = "(x::bigint << 42) | (t_x::bigint << 21) | big_t::bigint"


def clv_group_key(x: Any, t_x: Any, big_t: Any) -> Any:
    """CLV_GROUP_KEY computed by numpy for the distinct rows Python holds (integer days)."""
    return (x.astype(np.int64) << 42) | (t_x.astype(np.int64) << 21) | big_t.astype(np.int64)


def clv_customer_stats(
    cursor: Any, *, eligible: QuerySet[Customer], calibration_end: dt.date, holdout_end: dt.date | None
) -> None:
    """Per customer with a first purchase on or before `calibration_end`, in days (one statement into a
    temporary table): x = distinct purchase days − 1, t_x = last − first day, T = calibration end − first
    day, the mean spend of the repeat days (same-day purchases summed into one), and the repeat purchase
    days in the holdout (calibration end, holdout end]."""
    eligible_sql, eligible_params = _eligible_sql(eligible)
    purchase = Purchase._meta.db_table
    end = _day_end(holdout_end or calibration_end)
    cursor.execute(f"DROP TABLE IF EXISTS {CLV_STATS}")
    cursor.execute(
        f"""
        CREATE TEMP TABLE {CLV_STATS} AS
        SELECT customer_id, x, t_x, big_t, {CLV_GROUP_KEY} AS grp, monetary, holdout
        FROM (
            SELECT customer_id,
                   count(*) FILTER (WHERE day <= %s) - 1 AS x,
                   max(day) FILTER (WHERE day <= %s) - min(day) AS t_x,
                   %s::date - min(day) AS big_t,
                   CASE WHEN count(*) FILTER (WHERE day <= %s) > 1
                        THEN (sum(spend) FILTER (WHERE day <= %s)
                              - (min(ARRAY[day - DATE '2000-01-01', spend]))[2])
                             / (count(*) FILTER (WHERE day <= %s) - 1)
                        ELSE 0 END AS monetary,
                   count(*) FILTER (WHERE day > %s) AS holdout
            FROM (
                SELECT customer_id, (purchased_at AT TIME ZONE 'Asia/Tokyo')::date AS day,
                       sum(amount) AS spend
                FROM {purchase}
                WHERE purchased_at < %s AND customer_id IN ({eligible_sql})
                GROUP BY 1, 2
            ) days
            GROUP BY customer_id
        ) per_customer
        WHERE big_t >= 0
        """,
        [calibration_end] * 7 + [end, *eligible_params],
    )


def clv_fit_run(
    *,
    eligible: QuerySet[Customer],
    calibration_end: dt.date,
    time_unit: str = "week",
    horizon: int = 52,
    discount_rate: float = 0.1,
    holdout_end: dt.date | None = None,
    steps: int = 12,
    purpose_code: str = "analytics",
    actor: User | None = None,
) -> ClvFit:
    """Fit BG/NBD and Gamma-Gamma on the eligible customers' purchases up to `calibration_end`, store the
    fit, and store every customer's predictions set-based.

    Python sees only the distinct (x, t_x, T) rows with their counts (the summary statistics, one GROUP BY)
    and the (x, mean spend) of repeat buyers; predictions are computed per distinct row and joined back to
    the customers in one INSERT … SELECT, the Gamma-Gamma expectation written in that SQL.
    """
    start = time.perf_counter()
    unit = 7.0 if time_unit == ClvFit.TimeUnit.WEEK else 1.0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '256MB'")
        clv_customer_stats(
            cursor, eligible=eligible, calibration_end=calibration_end, holdout_end=holdout_end
        )
        # A temporary table is never analysed by autovacuum: without statistics the joins below are planned
        # for a thousand rows.
        cursor.execute(f"ANALYZE {CLV_STATS}")
        phases = {"stats": seconds_since(start)}
        # The summary once: the distinct rows with their customers and actual holdout purchase days.
        cursor.execute(f"SELECT x, t_x, big_t, count(*), sum(holdout) FROM {CLV_STATS} GROUP BY 1, 2, 3")
        groups = np.array(cursor.fetchall(), dtype=float).reshape(-1, 5)
        if not groups.size:
            raise ValueError("no customers")
        x, t_x, big_t, counts = groups[:, 0], groups[:, 1] / unit, groups[:, 2] / unit, groups[:, 3]
        phases["groups"] = seconds_since(start)
        bgnbd = clv.bgnbd_fit(x, t_x, big_t, counts)
        phases["bgnbd_fit"] = seconds_since(start)
        cursor.execute(f"SELECT x, monetary FROM {CLV_STATS} WHERE x > 0 AND monetary > 0")
        spend = np.array(cursor.fetchall(), dtype=float).reshape(-1, 2)
        gg = clv.gamma_gamma_fit(spend[:, 0], spend[:, 1]) if len(spend) >= 10 else None
        phases["gamma_gamma_fit"] = seconds_since(start)
        expected = clv.bgnbd_expected(bgnbd, horizon, x, t_x, big_t)
        alive = clv.bgnbd_p_alive(bgnbd, x, t_x, big_t)
        # Discounted expected purchases: CLV = this × the expected spend per purchase.
        discounted = clv.clv(
            bgnbd,
            np.ones_like(x),
            x,
            t_x,
            big_t,
            horizon=horizon,
            period_rate=rules.period_rate(discount_rate, time_unit),
            steps=steps,
        )
        holdout_t = ((holdout_end - calibration_end).days / unit) if holdout_end else 0.0
        predicted_holdout = (
            clv.bgnbd_expected(bgnbd, holdout_t, x, t_x, big_t) if holdout_end else np.zeros_like(x)
        )
        fit = ClvFit.objects.create(
            calibration_end=calibration_end,
            time_unit=time_unit,
            purpose_code=purpose_code,
            customers=int(counts.sum()),
            r=bgnbd.r,
            alpha=bgnbd.alpha,
            a=bgnbd.a,
            b=bgnbd.b,
            log_likelihood=bgnbd.log_likelihood,
            gg_customers=len(spend),
            p=gg.p if gg else None,
            q=gg.q if gg else None,
            v=gg.v if gg else None,
            gg_log_likelihood=gg.log_likelihood if gg else None,
            horizon=horizon,
            discount_rate=discount_rate,
        )
        phases["predictions"] = seconds_since(start)
        _clv_groups_load(
            cursor, clv_group_key(groups[:, 0], groups[:, 1], groups[:, 2]), expected, alive, discounted
        )
        phases["groups_loaded"] = seconds_since(start)
        stored = _clv_scores_insert(cursor, fit, gg, unit)
        phases["stored"] = seconds_since(start)
        if holdout_end:
            fit.holdout = clv_holdout_summary(holdout_end, x, counts, predicted_holdout, groups[:, 4])
        fit.seconds = seconds_since(start)
        fit.save(update_fields=["holdout", "seconds"])
        # Cumulative seconds at the end of each phase, and sizes: counts only.
        logger.info(
            "clv fit %s: %s, %s distinct rows, %s repeat buyers", fit.pk, phases, len(groups), len(spend)
        )
        _scores_audit(ClvScore, f"clv-fit:{fit.pk}", stored, actor, {"fit": fit.pk})
    return fit


def clv_fit_summary(fit: ClvFit) -> dict[str, Any]:
    """What `manage.py clv_fit` prints: customers, the BG/NBD and Gamma-Gamma parameters, the holdout."""
    out: dict[str, Any] = {
        "customers": fit.customers,
        "bgnbd": {
            "r": fit.r,
            "alpha": fit.alpha,
            "a": fit.a,
            "b": fit.b,
            "log_likelihood": fit.log_likelihood,
        },
        "gamma_gamma": {"p": fit.p, "q": fit.q, "v": fit.v},
        "fit": fit.pk,
        "seconds": fit.seconds,
    }
    if fit.holdout:
        out["holdout"] = fit.holdout
    return out


def _clv_groups_load(cursor: Any, keys: Any, expected: Any, alive: Any, discounted: Any) -> None:
    """The predictions of each distinct (x, t_x, T) row, by its key (CLV_GROUP_KEY), by one binary COPY into
    a temporary table: numpy lays the rows out in PostgreSQL's binary COPY format (no Python object per
    value; 0.8 M rows written one by one took seconds)."""
    cursor.execute(f"DROP TABLE IF EXISTS {CLV_GROUPS}")
    cursor.execute(
        f"CREATE TEMP TABLE {CLV_GROUPS} (grp bigint, expected float8, p_alive float8, discounted float8)"
    )
    data = copy_binary(
        [np.asarray(keys, dtype=">i8")] + [np.asarray(c, dtype=">f8") for c in (expected, alive, discounted)]
    )
    with cursor.connection.cursor() as raw, raw.copy(f"COPY {CLV_GROUPS} FROM STDIN (FORMAT binary)") as copy:
        copy.write(data)
    cursor.execute(f"ANALYZE {CLV_GROUPS}")


COPY_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length


def copy_binary(columns: list[Any]) -> bytes:
    """PostgreSQL's binary COPY of equal-length numpy columns of big-endian int4, int8 or float8 (">i4",
    ">i8", ">f8"), none NULL: per row the field count, then per field its byte length and its bytes; a -1
    trailer."""
    rows = len(columns[0]) if columns else 0
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for i, column in enumerate(columns):
        if column.dtype.str not in (">i4", ">i8", ">f8") or len(column) != rows:
            raise ValueError("binary COPY columns: equal length, >i4, >i8 or >f8")
        fields += [(f"len{i}", ">i4"), (f"v{i}", column.dtype.str)]
    table = np.empty(rows, dtype=np.dtype(fields))
    table["count"] = len(columns)
    for i, column in enumerate(columns):
        table[f"len{i}"] = column.dtype.itemsize
        table[f"v{i}"] = column
    return COPY_BINARY_HEADER + table.tobytes() + b"\xff\xff"


def _clv_scores_insert(cursor: Any, fit: ClvFit, gg: clv.GammaGamma | None, unit: float) -> int:
    """Every customer's scores in one INSERT … SELECT: the group's predictions joined on (x, t_x, T), the
    Gamma-Gamma expected spend (v + m x) p / (p x + q − 1) computed in SQL (the population mean p v/(q−1)
    for x = 0), CLV = discounted expected purchases × expected spend."""
    score = ClvScore._meta.db_table
    if gg is None:
        spend = "s.monetary"
        params: dict[str, Any] = {}
    else:
        spend = "(%(v)s + s.monetary * s.x) * %(p)s / (%(p)s * s.x + %(q)s - 1)"
        params = {"p": gg.p, "q": gg.q, "v": gg.v}
    params.update({"fit": fit.pk, "unit": unit})
    cursor.execute(
        f"""
        INSERT INTO {score} (fit_id, customer_id, frequency, recency, age, monetary, expected_purchases,
                             p_alive, expected_spend, clv)
        SELECT %(fit)s, s.customer_id, s.x, s.t_x / %(unit)s, s.big_t / %(unit)s, round(s.monetary, 2),
               g.expected, g.p_alive, round(({spend})::numeric, 2),
               round((g.discounted * {spend})::numeric, 2)
        FROM {CLV_STATS} s JOIN {CLV_GROUPS} g USING (grp)
        ORDER BY s.customer_id
        """,
        params,
    )
    return int(cursor.rowcount)


def clv_holdout_summary(
    holdout_end: dt.date, x: Any, counts: Any, predicted: Any, actual: Any
) -> dict[str, Any]:
    """Predicted against actual repeat purchase days in the holdout, in total and by calibration
    frequency (0 … 6, 7+), as in Fader, Hardie & Lee (2005a), Figure 3; from the distinct (x, t_x, T) rows:
    their customers, each one's predicted holdout purchases, and the rows' actual holdout purchase days."""
    bucket = np.minimum(x, 7).astype(int)
    rows = [
        (b, counts[bucket == b].sum(), (counts * predicted)[bucket == b].sum(), actual[bucket == b].sum())
        for b in np.unique(bucket)
    ]
    return {
        "holdout_end": holdout_end.isoformat(),
        "customers": int(sum(r[1] for r in rows)),
        "predicted": round(float(sum(r[2] for r in rows)), 1),
        "actual": int(sum(r[3] for r in rows)),
        "by_frequency": [
            {
                "x": f"{int(b)}+" if b == 7 else int(b),
                "customers": int(n),
                "predicted_mean": round(float(p) / n, 3),
                "actual_mean": round(float(a) / n, 3),
            }
            for b, n, p, a in rows
        ],
    }
