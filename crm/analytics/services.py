"""Writes of the analytics area: purchase imports, RFM runs, CLV fits. Each bulk write is set-based SQL and
writes its own summary audit entry (auditlog's signals do not see it): ids as ranges and counts, no value.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from celery import current_app
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.utils import timezone

from crm.analytics import imports
from crm.analytics.models import PurchaseImport
from crm.classification import REDACTED, audit_masked_fields
from crm.models import AuditEntry, Customer, Purchase, Team
from crm.permissions import team_open_to

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.core.files.uploadedfile import UploadedFile


PURCHASE_IMPORT_TASK = "crm.analytics.purchase_import"


def import_dir() -> Path:
    """Where uploaded files wait for their task (deleted once imported): ANALYTICS_IMPORT_DIR."""
    path = Path(getattr(settings, "ANALYTICS_IMPORT_DIR", "") or settings.BASE_DIR / ".data" / "imports")
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
        transaction.on_commit(lambda: current_app.send_task(PURCHASE_IMPORT_TASK, args=[batch.pk]))
    return batch


@contextlib.contextmanager
def _batch_lock(batch_id: int) -> Iterator[bool]:
    """A session advisory lock per batch: a redelivered task finds the batch taken and does nothing."""
    key = zlib.crc32(f"crm.analytics.import:{batch_id}".encode())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        (taken,) = cursor.fetchone()
    try:
        yield bool(taken)
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
    with _batch_lock(batch_id) as taken:
        batch = PurchaseImport.objects.get(pk=batch_id)
        if not taken or batch.status in (PurchaseImport.Status.DONE, PurchaseImport.Status.REFUSED):
            return batch
        _progress(batch, status=PurchaseImport.Status.RUNNING, started_at=timezone.now())
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
            _import_staged(batch, staged, actor)
        except Exception:
            _progress(batch, status=PurchaseImport.Status.FAILED, finished_at=timezone.now())
            raise
        finally:
            imports.stage_drop()
    return PurchaseImport.objects.get(pk=batch_id)


def _progress(batch: PurchaseImport, **values: Any) -> None:
    PurchaseImport.objects.filter(pk=batch.pk).update(**values)


def _import_staged(batch: PurchaseImport, staged: imports.StageResult, actor: User | None) -> None:
    """Validate the staged rows, then (unless refused whole) create missing customers and insert purchases,
    all in one transaction with the batch's outcome and its audit entries."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL TIME ZONE 'Asia/Tokyo'")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        imports.parse(channels=list(Customer.Channel.values), default_channel=Customer.Channel.IMPORT)
        invalid, parse_errors = imports.parse_errors()
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
        inserted = _purchases_insert(cursor, batch)
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
    """Wrap an INSERT … RETURNING id so the statement answers the inserted ids as [first, last] ranges
    (gaps and islands), not one row per id."""
    return (
        f"WITH ins AS ({insert_sql}) SELECT min(id), max(id) FROM "
        "(SELECT id, id - row_number() OVER (ORDER BY id) AS island FROM ins) i GROUP BY island ORDER BY 1"
    )


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
    return [[int(a), int(b)] for a, b in cursor.fetchall()]


def _purchases_insert(cursor: Any, batch: PurchaseImport) -> list[list[int]]:
    """Insert the valid rows as purchases of the team's customers, each with its import key (the md5 of
    team, external id, instant in microseconds, amount, quantity, category, channel and the occurrence of
    that same row in the file); a key already in the table is skipped (ON CONFLICT DO NOTHING)."""
    purchase, customer = Purchase._meta.db_table, Customer._meta.db_table
    insert = f"""
        INSERT INTO {purchase} (customer_id, team_id, order_no, amount, quantity, category, currency, channel,
                                purchased_at, import_key, created_at)
        SELECT c.id, %(team)s, NULL, k.amount, k.quantity, k.category, 'JPY', k.channel, k.ts,
               md5(concat_ws('|', %(team)s::text, k.ext,
                             (extract(epoch FROM k.ts) * 1000000)::bigint::text, k.amount::text,
                             k.quantity::text, k.category, k.channel, k.occurrence::text))::uuid,
               now()
        FROM (
            SELECT p.*, row_number() OVER (
                PARTITION BY ext, ts, amount, quantity, category, channel ORDER BY line) AS occurrence
            FROM {imports.PARSED} p WHERE errors = '{{}}'
        ) k
        JOIN {customer} c ON c.team_id = %(team)s AND c.external_id = k.ext
        ON CONFLICT (import_key) DO NOTHING RETURNING id
    """
    cursor.execute(_ranges_of(insert), {"team": batch.team_id})
    return [[int(a), int(b)] for a, b in cursor.fetchall()]


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
