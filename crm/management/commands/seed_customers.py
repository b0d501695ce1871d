"""Bulk seed: up to millions of realistic Japanese demo customers, loaded with PostgreSQL COPY.

    manage.py seed_customers --count 1000000 --teams 5 --batch 5000 --workers 2 [--vacuum]
        [--purchases-per-customer 3] [--events-per-customer 5]

Why not the service: customer_create runs full_clean, one INSERT and one audit entry per row, which is
about 300 rows a second. Here each row goes through the same code the service uses for what ends up in
the database — `Customer.normalise()` (the forms full_clean stores), `Customer.refresh_blind_indexes()`
and each encrypted field's own `get_prep_value()` (so the tokens are exactly what the ORM writes) — and
batches are written with COPY. Generation and encryption (the CPU-bound part) run in `--workers`
processes, each with its own connection and its own COPY. Validators (field rules, the My Number check
in `clean()`) are not run: the generator (crm.demo) is trusted input and never writes a 12-digit number.

Each batch is its own transaction, so an interrupted run leaves whole batches behind; running the
command again continues after the highest member number. Purchases and behavioural events (for the
retention and analytics benchmarks) are generated in SQL from the loaded customers. One summary audit
entry (counts and id range only, no personal values) records the load: auditlog does not see COPY.
Refuses to run in production.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, connections, models
from django.utils import timezone

from crm.demo import EXTRA_TEAMS, demo_customers
from crm.fields import _EncryptedMixin
from crm.models import AuditEntry, Customer, CustomerEvent, Purchase, Team

MEMBER_NO_PATTERN = r"^M[0-9]{9}$"
SQL_CHUNK = 50_000  # customers per INSERT … SELECT of purchases/events: bounded transactions


@dataclass(frozen=True)
class Batch:
    """One unit of work for a worker: customers numbered start … start+count-1."""

    start: int
    count: int
    team_ids: tuple[int, ...]
    seed: int
    now: datetime


class _RowBuilder:
    """Turns generated field values into COPY rows the way the ORM would store them.

    One Customer instance is reused for every row (building a model instance costs more than encrypting
    it); its attributes are reset to the field defaults before each row.
    """

    def __init__(self) -> None:
        self.fields = [f for f in Customer._meta.concrete_fields if not f.primary_key]
        self.columns = [f.column for f in self.fields]
        self.defaults = {f.attname: f.get_default() for f in self.fields}
        self.instance = Customer()
        self.encrypted = {f.attname for f in self.fields if isinstance(f, _EncryptedMixin)}
        self.json = {f.attname for f in self.fields if isinstance(f, models.JSONField)}

    def row(self, values: dict[str, Any], team_id: int, now: datetime) -> list[Any]:
        customer = self.instance
        customer.__dict__.update(self.defaults)
        customer.__dict__.update(values)
        customer.team_id = team_id
        customer.created_at = customer.updated_at = now
        customer.normalise()  # the stored forms, as full_clean makes them: e-mail case, E.164, postal code
        customer.refresh_blind_indexes()
        out: list[Any] = []
        state = customer.__dict__
        for field in self.fields:
            value = state[field.attname]
            if field.attname in self.encrypted:
                value = field.get_prep_value(value)
            elif field.attname in self.json:
                value = json.dumps(value, ensure_ascii=False)
            out.append(value)
        return out


@cache
def _builder() -> _RowBuilder:
    return _RowBuilder()


def load_batch(batch: Batch) -> tuple[int, int, int]:
    """Generate, encrypt and COPY one batch; returns (rows, lowest id, highest id) written."""
    builder = _builder()
    rng = random.Random(batch.seed * 1_000_003 + batch.start)  # team assignment, reproducible
    rows = [
        builder.row(values, rng.choice(batch.team_ids), batch.now)
        for values in demo_customers(batch.count, seed=batch.seed, start=batch.start)
    ]
    table = Customer._meta.db_table
    cols = ", ".join(connection.ops.quote_name(c) for c in ["id", *builder.columns])
    with connection.cursor() as cur:
        # Take the ids from the table's own sequence first, so that the caller learns exactly which rows
        # this batch wrote (COPY returns nothing) and concurrent workers never collide.
        cur.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [table, len(rows)],
        )
        ids = [r[0] for r in cur.fetchall()]
        with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for pk, row in zip(ids, rows, strict=True):
                copy.write_row([pk, *row])
    return len(rows), min(ids), max(ids)


def _worker_init() -> None:
    # The parent closed its connections before forking; make sure no inherited object is reused.
    for conn in connections.all(initialized_only=True):
        conn.connection = None


class Command(BaseCommand):
    help = "大量のデモ顧客を COPY で高速に登録します（本番環境では実行できません）。"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=1_000_000, help="登録する顧客数")
        parser.add_argument("--teams", type=int, default=5, help="顧客を割り当てるチーム数")
        parser.add_argument("--batch", type=int, default=5000, help="COPY 1回あたりの行数")
        parser.add_argument(
            "--workers", type=int, default=2, help="暗号化を行うプロセス数（0 = 同一プロセス）"
        )
        parser.add_argument("--seed", type=int, default=42, help="乱数の種（同じ種なら同じ顧客）")
        parser.add_argument("--purchases-per-customer", type=int, default=0, help="顧客あたりの平均購買数")
        parser.add_argument("--events-per-customer", type=int, default=0, help="顧客あたりの平均イベント数")
        parser.add_argument("--vacuum", action="store_true", help="ANALYZE の代わりに VACUUM ANALYZE を行う")

    def handle(self, *args: Any, **opts: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("seed_customers は本番環境では実行できません。")
        count, batch_size, workers = opts["count"], opts["batch"], opts["workers"]
        if count < 1 or batch_size < 1 or opts["teams"] < 1 or workers < 0:
            raise CommandError("--count・--batch・--teams は1以上、--workers は0以上を指定してください。")
        teams = self._teams(opts["teams"])
        start = self._next_member_number()
        now = timezone.now()
        batches = [
            Batch(s, min(batch_size, start + count - s), tuple(t.pk for t in teams), opts["seed"], now)
            for s in range(start, start + count, batch_size)
        ]
        began = time.monotonic()
        written, id_lo, id_hi = self._load(batches, workers)
        elapsed = time.monotonic() - began
        self.stdout.write(f"customers: {written} in {elapsed:.1f}s ({written / max(elapsed, 1e-9):.0f}/s)")
        purchases = events = 0
        if opts["purchases_per_customer"] > 0:
            purchases = self._purchases(id_lo, id_hi, opts["purchases_per_customer"])
            self.stdout.write(f"purchases: {purchases}")
        if opts["events_per_customer"] > 0:
            events = self._events(id_lo, id_hi, opts["events_per_customer"])
            self.stdout.write(f"events: {events}")
        self._audit(written, id_lo, id_hi, teams, start, purchases, events)
        self._analyze(vacuum=opts["vacuum"])
        self.stdout.write(f"done in {time.monotonic() - began:.1f}s")

    # --- steps --------------------------------------------------------------------------------------

    def _teams(self, k: int) -> list[Team]:
        """The first `k` teams by id, adding teams (EXTRA_TEAMS, then numbered ones) when there are fewer."""
        teams = list(Team.objects.order_by("id")[:k])
        extra = iter(
            [*EXTRA_TEAMS, *((f"seed-team-{i:02d}", f"シードチーム{i:02d}") for i in range(1, 1000))]
        )
        while len(teams) < k:
            code, name = next(extra)
            team, _created = Team.objects.get_or_create(code=code, defaults={"name": name})
            if team not in teams:
                teams.append(team)
        return teams

    def _next_member_number(self) -> int:
        last = (
            Customer.objects.filter(member_no__regex=MEMBER_NO_PATTERN)
            .order_by("-member_no")
            .values_list("member_no", flat=True)
            .first()
        )
        return int(last[1:]) + 1 if last else 1

    def _load(self, batches: Sequence[Batch], workers: int) -> tuple[int, int, int]:
        written, id_lo, id_hi = 0, None, None
        last_report = time.monotonic()
        total = sum(b.count for b in batches)

        def collect(result: tuple[int, int, int]) -> None:
            nonlocal written, id_lo, id_hi, last_report
            n, lo, hi = result
            written += n
            id_lo = lo if id_lo is None else min(id_lo, lo)
            id_hi = hi if id_hi is None else max(id_hi, hi)
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                self.stdout.write(f"  {written}/{total}")

        if workers == 0:
            for b in batches:
                collect(load_batch(b))
        else:
            # Forked workers must not share the parent's socket: close it first, each child reconnects.
            connections.close_all()
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(workers, initializer=_worker_init) as pool:
                for result in pool.imap_unordered(load_batch, batches):
                    collect(result)
        assert id_lo is not None and id_hi is not None
        return written, id_lo, id_hi

    def _purchases(self, id_lo: int, id_hi: int, per_customer: int) -> int:
        """0 … 2k purchases per customer (k on average), between acquisition and last activity."""
        table, customers = Purchase._meta.db_table, Customer._meta.db_table
        # Only table names from the models are formatted in; every value is a parameter.
        sql = f"""
            INSERT INTO {table} (customer_id, team_id, order_no, amount, currency, channel,
                                 purchased_at, created_at, quantity, category)
            SELECT c.id, c.team_id, 'S' || lpad(c.id::text, 10, '0') || '-' || lpad(g::text, 3, '0'),
                   (300 + floor(random() * 30000))::numeric, 'JPY', c.collection_channel,
                   c.collected_at + (coalesce(c.last_activity_at, now()) - c.collected_at) * random(),
                   now(), 1, ''
            FROM {customers} c
            CROSS JOIN LATERAL generate_series(1, ((c.id * 7919) %% (2 * %s + 1))::int) AS g
            WHERE c.id BETWEEN %s AND %s
        """  # noqa: S608
        return self._chunked(sql, id_lo, id_hi, per_customer)

    def _events(self, id_lo: int, id_hi: int, per_customer: int) -> int:
        """0 … 2k behavioural events per customer, of the CustomerEvent kinds."""
        table, customers = CustomerEvent._meta.db_table, Customer._meta.db_table
        # Only table names from the models are formatted in; every value is a parameter.
        sql = f"""
            INSERT INTO {table} (customer_id, visitor_id, kind, occurred_at, properties, source, created_at)
            SELECT c.id, '', (%s::text[])[1 + floor(random() * cardinality(%s::text[]))::int],
                   c.collected_at + (coalesce(c.last_activity_at, now()) - c.collected_at) * random(),
                   '{{}}'::jsonb, 'seed', now()
            FROM {customers} c
            CROSS JOIN LATERAL generate_series(1, ((c.id * 104729) %% (2 * %s + 1))::int) AS g
            WHERE c.id BETWEEN %s AND %s
        """  # noqa: S608
        kinds = list(CustomerEvent.Kind.values)
        return self._chunked(sql, id_lo, id_hi, per_customer, [kinds, kinds])

    def _chunked(
        self, sql: str, id_lo: int, id_hi: int, per_customer: int, leading: Sequence[Any] = ()
    ) -> int:
        total = 0
        with connection.cursor() as cur:
            for lo in range(id_lo, id_hi + 1, SQL_CHUNK):
                cur.execute(sql, [*leading, per_customer, lo, min(lo + SQL_CHUNK - 1, id_hi)])
                total += cur.rowcount
        return total

    def _audit(
        self, written: int, id_lo: int, id_hi: int, teams: list[Team], start: int, purchases: int, events: int
    ) -> None:
        """One summary entry for the whole load: counts and ids only, never a personal value."""
        AuditEntry.objects.create(
            content_type=ContentType.objects.get_for_model(Customer),
            object_pk=f"bulk:{id_lo}-{id_hi}",
            object_repr=f"顧客の一括登録（seed_customers）{written}件",
            action=AuditEntry.Action.CREATE,
            changes={},
            additional_data={
                "command": "seed_customers",
                "customers": written,
                "id_range": [id_lo, id_hi],
                "member_number_start": start,
                "teams": [t.pk for t in teams],
                "purchases": purchases,
                "events": events,
            },
        )

    def _analyze(self, *, vacuum: bool) -> None:
        # Fresh statistics so the planner sees a million rows (reltuples also feeds the paginator).
        verb = "VACUUM (ANALYZE)" if vacuum else "ANALYZE"
        with connection.cursor() as cur:
            for model in (Customer, Purchase, CustomerEvent):
                cur.execute(f"{verb} {model._meta.db_table}")
