"""Consent-state lookup and `consented_to(...)` counting at scale, side by side with a ledger-scan baseline.

Run against a scratch database (it is filled with 1,000,000 customers and ~5,000,000 ledger rows):

    createdb crm_consent_bench
    DATABASE_URL=postgres://root@127.0.0.1:5432/crm_consent_bench python manage.py migrate
    DATABASE_URL=postgres://root@127.0.0.1:5432/crm_consent_bench python bench/consent_bench.py

Seeding uses COPY. Customers come from `manage.py seed_customers` when that command exists and
--minimal-customers is not given; otherwise minimal rows are copied in with dummy ciphertext (the bench never
decrypts them). The seed is kept between runs (pass --reseed to start again).

Measured, with p50/p95 over repeated runs:
- state lookup for one random customer: `consent.selectors.consent_state` (current-state table, unique
  index) vs the baseline DISTINCT ON over that customer's ledger rows;
- counting `consent.selectors.consented_to(customers, "marketing_email")` vs the baseline that derives every
  current state from the ledger (DISTINCT ON over all rows) with no current-state table;
- counting `consent.selectors.usable_for(customers, code)` — the lawful-basis rule (issue #17) — for a
  legitimate-interest purpose ("analytics": active, no standing objection) and for a consent purpose
  ("marketing_email": granted, and no objection to direct marketing), beside consented_to's count in the
  same run. ~1% of customers object to analytics (a tenth of those answered by a compelling-grounds
  decision) and ~0.5% to direct marketing; each count is checked against hand-written SQL.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.core.management import call_command, get_commands  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from consent import selectors, services  # noqa: E402
from consent.models import ConsentEvent, Objection, Purpose  # noqa: E402
from crm.models import Customer, Team  # noqa: E402

DUMMY_TOKEN = "gAAAAAB" + "x" * 113  # the length of a Fernet token of a short name; never decrypted
CHANNELS = [c for c, _label in ConsentEvent.Channel.choices]
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def log(msg: str) -> None:
    print(msg, flush=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def timed(fn: Callable[[], object], runs: int) -> tuple[list[float], object]:
    samples, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples, result


def copy_text(table: str, columns: list[str], rows: Iterator[str], batch: int = 200_000) -> None:
    """COPY tab-separated lines into `table` in chunks (each chunk one COPY statement)."""
    with connection.cursor() as cur:
        raw = cur.cursor  # psycopg 3 cursor
        buf: list[str] = []

        def flush() -> None:
            if not buf:
                return
            with raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
                cp.write("".join(buf))
            buf.clear()

        for line in rows:
            buf.append(line)
            if len(buf) >= batch:
                flush()
        flush()


def seed_customers_minimal(count: int, team_id: int) -> None:
    """Minimal customer rows through COPY: every NOT NULL column gets a neutral value."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_name = 'crm_customer' ORDER BY ordinal_position"
        )
        cols = cur.fetchall()
    now = datetime.now(UTC).isoformat()
    fixed: dict[str, Callable[[int], str]] = {
        "team_id": lambda i: str(team_id),
        # ~2% stop-use (APPI Art. 35) and ~3% closed: consented_to must leave them out.
        "status": lambda i: "stop_use" if i % 50 == 0 else ("closed" if i % 33 == 0 else "active"),
        "family_name": lambda i: DUMMY_TOKEN,
        "collection_channel": lambda i: "web_form",
        "collected_at": lambda i: now,
        "created_at": lambda i: now,
        "updated_at": lambda i: now,
        "preferences": lambda i: "{}",
    }
    names, makers = [], []
    for name, dtype, nullable, _default in cols:
        if name == "id":
            continue
        names.append(name)
        if name in fixed:
            makers.append(fixed[name])
        elif nullable == "YES":
            makers.append(lambda i: "\\N")
        elif dtype in ("text", "character varying"):
            makers.append(lambda i: "")
        elif dtype == "jsonb":
            makers.append(lambda i: "{}")
        elif dtype == "boolean":
            makers.append(lambda i: "f")
        elif "timestamp" in dtype:
            makers.append(lambda i: now)
        else:
            makers.append(lambda i: "0")

    def lines() -> Iterator[str]:
        for i in range(1, count + 1):
            yield "\t".join(m(i) for m in makers) + "\n"

    copy_text("crm_customer", names, lines())


def seed_ledger(customer_ids: list[int], per_customer: float, rng: random.Random) -> int:
    """~per_customer ledger rows per customer over the 10 purposes, grants and withdrawals mixed."""
    purposes = list(Purpose.objects.select_related("current_version"))
    cols = [
        "customer_id",
        "visitor_id",
        "purpose_id",
        "purpose_version_id",
        "action",
        "method",
        "channel",
        "form_id",
        "text_hash",
        "source_ip",
        "user_agent",
        "occurred_at",
        "recorded_at",
    ]
    counter = [0]
    now = datetime.now(UTC).isoformat()

    def lines() -> Iterator[str]:
        for cid in customer_ids:
            n = max(1, int(rng.expovariate(1 / per_customer) + 0.5))
            for _ in range(n):
                p = purposes[rng.randrange(len(purposes))]
                grant = rng.random() < 0.7
                when = (EPOCH + timedelta(seconds=rng.randrange(0, 2 * 365 * 86400))).isoformat()
                counter[0] += 1
                yield (
                    f"{cid}\t\t{p.pk}\t{p.current_version_id}\t{'grant' if grant else 'withdraw'}\t"
                    f"{'opt_in' if grant else 'opt_out'}\t{CHANNELS[rng.randrange(len(CHANNELS))]}\t"
                    f"bench\t{p.current_version.text_hash}\t\t\t{when}\t{now}\n"
                )

    copy_text("consent_consentevent", cols, lines())
    return counter[0]


def seed_objections(customer_ids: list[int], rng: random.Random) -> int:
    """Objections (GDPR Art. 21) through COPY: ~1% of customers to analytics (every tenth answered by a
    compelling-grounds decision) and ~0.5% to direct marketing. Ids are taken from the table's sequence so
    decisions can point at their objection."""
    analytics = Purpose.objects.get(code="analytics").pk
    now = datetime.now(UTC).isoformat()
    with connection.cursor() as cur:
        cur.execute("SELECT coalesce(max(id), 0) FROM consent_objection")
        next_id = cur.fetchone()[0] + 1
    cols = ["id", "customer_id", "kind", "scope", "purpose_id", "answers_id", "source", "reason"]
    cols += ["api_client_id", "operator_id", "occurred_at", "recorded_at"]
    rows: list[str] = []
    for cid in customer_ids:
        draw = rng.random()
        if draw < 0.01:
            rows.append(
                f"{next_id}\t{cid}\tobjection\tpurpose\t{analytics}\t\\N\tapi\t\t\\N\t\\N\t{now}\t{now}\n"
            )
            if rng.random() < 0.1:
                rows.append(
                    f"{next_id + 1}\t{cid}\tcompelling_grounds\tpurpose\t{analytics}\t{next_id}\tadmin\t"
                    f"{DUMMY_TOKEN}\t\\N\t\\N\t{now}\t{now}\n"
                )
                next_id += 1
            next_id += 1
        elif draw < 0.015:
            rows.append(
                f"{next_id}\t{cid}\tobjection\tdirect_marketing\t\\N\t\\N\tapi\t\t\\N\t\\N\t{now}\t{now}\n"
            )
            next_id += 1
    copy_text("consent_objection", cols, iter(rows))
    with connection.cursor() as cur:
        cur.execute("SELECT setval(pg_get_serial_sequence('consent_objection', 'id'), %s)", [next_id])
    return len(rows)


def seed(args: argparse.Namespace) -> None:
    rng = random.Random(20260401)
    have = Customer.objects.count()
    if have < args.customers:
        if "seed_customers" in get_commands() and not args.minimal_customers:
            log(f"seeding {args.customers - have:,} customers with manage.py seed_customers …")
            call_command("seed_customers", count=args.customers - have)
        else:
            log(f"seeding {args.customers - have:,} minimal customers with COPY …")
            team, _created = Team.objects.get_or_create(code="bench", defaults={"name": "ベンチマーク"})
            seed_customers_minimal(args.customers - have, team.pk)
    with connection.cursor() as cur:
        cur.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = 'consent_consentevent'::regclass")
        ledger_rows = cur.fetchone()[0]
    if ledger_rows < args.customers * args.events_per_customer * 0.8:
        ids = list(Customer.objects.order_by("id").values_list("id", flat=True)[: args.customers])
        log(f"seeding the ledger for {len(ids):,} customers with COPY …")
        start = time.perf_counter()
        n = seed_ledger(ids, args.events_per_customer, rng)
        log(f"  {n:,} ledger rows in {time.perf_counter() - start:.0f} s")
        log("building the current-state table from the ledger (consent_state_rebuild) …")
        start = time.perf_counter()
        built = services.consent_state_rebuild()
        log(f"  {built:,} state rows in {time.perf_counter() - start:.0f} s")
    if not Objection.objects.exists():
        ids = list(Customer.objects.order_by("id").values_list("id", flat=True)[: args.customers])
        log(f"seeding objections for {len(ids):,} customers with COPY …")
        log(f"  {seed_objections(ids, rng):,} objection rows")
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE consent_objection")
        cur.execute("VACUUM ANALYZE crm_customer")
        cur.execute("VACUUM ANALYZE consent_consentevent")
        cur.execute("VACUUM ANALYZE consent_consentstate")


BASELINE_STATE_SQL = """
SELECT DISTINCT ON (e.purpose_id) p.code, e.action = 'grant', v.version, e.occurred_at, e.channel
FROM consent_consentevent e
JOIN consent_purpose p ON p.id = e.purpose_id
JOIN consent_purposeversion v ON v.id = e.purpose_version_id
WHERE e.customer_id = %s
ORDER BY e.purpose_id, e.occurred_at DESC, e.id DESC
"""

BASELINE_COUNT_SQL = """
SELECT count(*) FROM crm_customer c
JOIN (
    SELECT DISTINCT ON (customer_id) customer_id, action
    FROM consent_consentevent
    WHERE purpose_id = %s AND customer_id IS NOT NULL
    ORDER BY customer_id, occurred_at DESC, id DESC
) last ON last.customer_id = c.id
WHERE last.action = 'grant' AND c.status = 'active'
"""

# Hand-written checks of usable_for's counts (not baselines to race: the same answer, written independently).
CHECK_LEGITIMATE_INTEREST_SQL = """
SELECT count(*) FROM crm_customer c WHERE c.status = 'active' AND NOT EXISTS (
    SELECT 1 FROM consent_objection o WHERE o.customer_id = c.id AND o.kind = 'objection'
    AND o.scope = 'purpose' AND o.purpose_id = %s
    AND NOT EXISTS (SELECT 1 FROM consent_objection d WHERE d.answers_id = o.id))
"""
CHECK_MARKETING_SQL = """
SELECT count(*) FROM crm_customer c
JOIN consent_consentstate s ON s.customer_id = c.id AND s.purpose_id = %s AND s.granted
WHERE c.status = 'active' AND NOT EXISTS (
    SELECT 1 FROM consent_objection o WHERE o.customer_id = c.id AND o.kind = 'objection'
    AND o.scope = 'direct_marketing')
"""


def bench(args: argparse.Namespace) -> None:
    rng = random.Random(7)
    with connection.cursor() as cur:
        cur.execute("SELECT min(id), max(id) FROM crm_customer")
        lo, hi = cur.fetchone()
        cur.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = 'consent_consentevent'::regclass")
        ledger = cur.fetchone()[0]
        cur.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = 'consent_consentstate'::regclass")
        states = cur.fetchone()[0]
    customers = Customer.objects.count()
    log(f"\ncustomers {customers:,} · ledger rows ≈{ledger:,} · current-state rows ≈{states:,}")
    log(f"PostgreSQL: {connection.cursor().connection.info.server_version} · cores {os.cpu_count()}")

    # 1. One customer's state. Unsaved instances carry only the pk: the bench never decrypts a row.
    picks = [Customer(pk=rng.randint(lo, hi)) for _ in range(args.lookups)]
    it = iter(picks * 2)
    ours, _sample = timed(lambda: selectors.consent_state(customer=next(it)), args.lookups)

    def baseline_state() -> list[tuple]:
        with connection.cursor() as cur:
            cur.execute(BASELINE_STATE_SQL, [next(it2).pk])
            return cur.fetchall()

    it2 = iter(picks * 2)
    base, _rows = timed(baseline_state, args.lookups)
    # Both answers agree on a sample of customers.
    for c in picks[:50]:
        with connection.cursor() as cur:
            cur.execute(BASELINE_STATE_SQL, [c.pk])
            expected = {code: granted for code, granted, *_rest in cur.fetchall()}
        got = {code: s["granted"] for code, s in selectors.consent_state(customer=c).items()}
        assert got == expected, (c.pk, got, expected)

    # 2. consented_to(...).count()
    purpose_id = Purpose.objects.get(code="marketing_email").pk
    qs_count, n_ours = timed(
        lambda: selectors.consented_to(Customer.objects.all(), "marketing_email").count(), args.count_runs
    )

    def baseline_count() -> int:
        with connection.cursor() as cur:
            cur.execute(BASELINE_COUNT_SQL, [purpose_id])
            return cur.fetchone()[0]

    base_count, n_base = timed(baseline_count, args.baseline_runs)
    assert n_ours == n_base, (n_ours, n_base)

    # 3. usable_for(...).count(): the lawful-basis rule, same runs as consented_to's above.
    li_count, n_li = timed(
        lambda: selectors.usable_for(Customer.objects.all(), "analytics").count(), args.count_runs
    )
    mk_count, n_mk = timed(
        lambda: selectors.usable_for(Customer.objects.all(), "marketing_email").count(), args.count_runs
    )
    with connection.cursor() as cur:
        cur.execute(CHECK_LEGITIMATE_INTEREST_SQL, [Purpose.objects.get(code="analytics").pk])
        assert n_li == cur.fetchone()[0], n_li
        cur.execute(CHECK_MARKETING_SQL, [purpose_id])
        assert n_mk == cur.fetchone()[0], n_mk

    def row(label: str, samples: list[float], target: str) -> str:
        return (
            f"{label:<58} {statistics.median(samples):>10.2f} {pct(samples, 95):>10.2f} "
            f"{len(samples):>6}  {target}"
        )

    log(f"\n{'query':<58} {'p50 ms':>10} {'p95 ms':>10} {'runs':>6}  target")
    log(row("state of one customer — ConsentState (ours)", ours, "p95 ≤ 5 ms"))
    log(row("state of one customer — DISTINCT ON ledger (baseline)", base, ""))
    log(row(f"consented_to('marketing_email').count() = {n_ours:,} (ours)", qs_count, "≤ 1000 ms"))
    log(row("same count from the ledger, DISTINCT ON (baseline)", base_count, ""))
    log(row(f"usable_for('analytics').count() = {n_li:,} (legit. interest)", li_count, "≤ 1000 ms"))
    log(row(f"usable_for('marketing_email').count() = {n_mk:,} (consent)", mk_count, "≤ 1000 ms"))
    everyone = Customer.objects.all()
    plans = [
        ("consented_to('marketing_email')", selectors.consented_to(everyone, "marketing_email")),
        ("usable_for('analytics')", selectors.usable_for(everyone, "analytics")),
        ("usable_for('marketing_email')", selectors.usable_for(everyone, "marketing_email")),
    ]
    for label, qs in plans:
        log(f"\nplan of {label}.count():")
        with connection.cursor() as cur:
            sql, params = qs.order_by().query.sql_with_params()
            cur.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT count(*) FROM ({sql}) q", params)
            for (line,) in cur.fetchall():
                log("  " + line)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events-per-customer", type=float, default=5.0)
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--count-runs", type=int, default=9)
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument(
        "--minimal-customers", action="store_true", help="COPY minimal rows, skip seed_customers"
    )
    parser.add_argument("--reseed", action="store_true", help="empty the customers and the ledger first")
    args = parser.parse_args()
    db = connection.settings_dict["NAME"]
    if "_bench" not in db and not os.environ.get("CONSENT_BENCH_ANY_DB"):
        sys.exit(f"Refusing to fill database {db!r}: use a scratch database whose name contains _bench.")
    if args.reseed:
        with transaction.atomic(), connection.cursor() as cur:
            # A scratch database: lift the TRUNCATE guard of the ledger (crm 0012) for this transaction.
            cur.execute("SET LOCAL crm.allow_truncate = on")
            cur.execute(
                "TRUNCATE consent_objection, consent_consentstate, consent_consentevent, crm_customer CASCADE"
            )
    seed(args)
    bench(args)


if __name__ == "__main__":
    main()
