"""Retention engine benchmark: erase the customers a policy matches, with their purchases and events.

    DATABASE_URL=postgres://root@127.0.0.1:5432/crm_retention_bench \\
        python bench/retention_bench.py [--customers 1000000] [--matching 200000] [--workers 1]

Builds once a template database `<db>_tpl` with N customers (encrypted identifiers, as the application
stores them), one purchase and two behavioural events each; every (N / matching)-th customer has been
inactive for six years, the rest were active this year. Then, each on a fresh copy of the template
(CREATE DATABASE … TEMPLATE) and in its own process, it erases the matching customers three ways:

  engine    the retention engine: a policy run (keyset batches, FOR UPDATE SKIP LOCKED, predicate re-checked,
            purchases unlinked, events deleted, tombstones and audit entries written), walked in-process
            by --workers processes (one Celery worker process each, without the broker);
  queryset  a plain `Customer.objects.filter(<same predicate>).delete()` (Django collector, auditlog
            signals);
  raw_sql   one transaction of raw SQL (unlink purchases, delete events, delete customers): the floor.

and prints throughput (customers/s) and peak RSS side by side. Targets: engine >= 2,000 customers/s,
peak RSS <= 300 MB whatever N, and within 3x of the raw-SQL floor. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AS_OF = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
OLD = dt.datetime(2020, 6, 1, 10, 0, tzinfo=dt.UTC)
RECENT = dt.datetime(2026, 9, 1, 10, 0, tzinfo=dt.UTC)


def _url_with_db(url: str, name: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path="/" + name))


def _admin_conn(url: str):
    import psycopg

    return psycopg.connect(_url_with_db(url, "postgres"), autocommit=True)


def _django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DEBUG"] = "0"  # no query log in memory
    import django

    django.setup()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- building the template ---------------------------------------------------------------------------


def build_template(url: str, customers: int, matching: int) -> None:
    tpl = urlparse(url).path.lstrip("/") + "_tpl"
    with _admin_conn(url) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [tpl]).fetchone():
            print(f"template {tpl} exists (drop it to rebuild)", flush=True)
            return
        admin.execute(f'CREATE DATABASE "{tpl}"')
    tpl_url = _url_with_db(url, tpl)
    env = {**os.environ, "DATABASE_URL": tpl_url, "DJANGO_ENV": os.environ.get("DJANGO_ENV", "development")}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "load",
            "--url",
            tpl_url,
            "--customers",
            str(customers),
            "--matching",
            str(matching),
        ],
        check=True,
    )


def child_load(url: str, customers: int, matching: int) -> None:
    _django(url)
    from django.db import connection

    from crm.crypto import encrypt_str, name_index

    every = max(1, customers // matching)
    pool = 499  # distinct encrypted values per field, reused: the engine never reads most of them
    # Each token is bound to the column it is written to (crm.crypto), as the field would bind it.
    names = [encrypt_str(f"山田{i}", bound_to="crm.Customer.family_name") for i in range(pool)]
    given = [encrypt_str(f"山田{i}", bound_to="crm.Customer.given_name") for i in range(pool)]
    emails = [encrypt_str(f"user{i}@example.com", bound_to="crm.Customer.email") for i in range(pool)]
    addresses = [
        encrypt_str(f"東京都千代田区丸の内{i}-1-1", bound_to="crm.Customer.address") for i in range(pool)
    ]
    births = [
        encrypt_str(
            (dt.date(1950, 1, 1) + dt.timedelta(days=37 * i)).isoformat(), bound_to="crm.Customer.birth_date"
        )
        for i in range(pool)
    ]
    bidx = [name_index(f"山田{i}") for i in range(pool)]
    t0 = time.monotonic()
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO crm_team (code, name, created_at) VALUES ('bench', 'ベンチ', now()) RETURNING id"
        )
        team = cur.fetchone()[0]
    raw = connection.connection
    cols = (
        "id, team_id, status, member_no, family_name, given_name, family_name_kana, given_name_kana, email, "
        "phone, postal_code, address, birth_date, app_user_id, device_id, pos_card_no, prefecture, gender, "
        "preferences, notes, collection_channel, collected_at, acquisition_note, age_band, email_bidx, "
        "phone_bidx, name_bidx, kana_bidx, last_activity_at, created_at, updated_at"
    )
    with raw.cursor() as cur:
        with cur.copy(f"COPY crm_customer ({cols}) FROM STDIN") as cp:
            for i in range(1, customers + 1):
                k = i % pool
                active = OLD if i % every == 0 else RECENT
                cp.write_row(
                    (
                        i,
                        team,
                        "active",
                        f"B{i:09d}",
                        names[k],
                        given[(k + 1) % pool],
                        "",
                        "",
                        emails[k],
                        "",
                        "",
                        addresses[k],
                        births[k],
                        "",
                        "",
                        "",
                        "13",
                        "",
                        "{}",
                        "",
                        "web_form",
                        OLD,
                        "",
                        "",
                        "",
                        "",
                        bidx[k],
                        "",
                        active,
                        OLD,
                        OLD,
                    )
                )
        print(f"customers loaded in {time.monotonic() - t0:.0f}s", flush=True)
        with cur.copy(
            "COPY crm_purchase (id, customer_id, team_id, order_no, amount, currency, channel, purchased_at, "
            "created_at) FROM STDIN"
        ) as cp:
            for i in range(1, customers + 1):
                cp.write_row((i, i, team, f"ORD{i:010d}", 1980, "JPY", "web_form", OLD, OLD))
        with cur.copy(
            "COPY crm_customerevent (id, customer_id, visitor_id, kind, occurred_at, properties, source, "
            "created_at) "
            "FROM STDIN"
        ) as cp:
            for i in range(1, customers + 1):
                for j in (0, 1):
                    cp.write_row(
                        (2 * i - 1 + j, i, f"v{i}-{j}", "page_view", OLD, '{"path": "/"}', "web", OLD)
                    )
        for table in ("crm_customer", "crm_purchase", "crm_customerevent"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        raw.commit()
        cur.execute("VACUUM ANALYZE")
    print(f"template loaded in {time.monotonic() - t0:.0f}s", flush=True)


# --- contenders ----------------------------------------------------------------------------------------


def child_engine(url: str, batch: int, workers: int, action: str) -> dict:
    _django(url)
    from django.conf import settings

    from crm.retention import services
    from crm.retention.models import RetentionPolicy, RetentionRun

    settings.RETENTION_RUN_SLICES = max(1, workers) * 4
    policy = RetentionPolicy.objects.create(
        name="bench", trigger="inactive", days=1095, action=action, legal_basis="bench", batch_size=batch
    )
    t0 = time.monotonic()
    run = services.retention_run_start(policy=policy, as_of=AS_OF, enqueue=False)
    if workers <= 1:
        services.retention_run_to_completion(run=run)
        child_rss = 0.0
    else:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "walk",
                    "--url",
                    url,
                    "--run",
                    str(run.pk),
                    "--part",
                    str(i),
                    "--parts",
                    str(workers),
                ]
            )
            for i in range(workers)
        ]
        child_rss = 0.0
        for p in procs:
            _pid, status, ru = os.wait4(p.pid, 0)
            if status != 0:
                raise SystemExit(f"walker failed with status {status}")
            child_rss = max(child_rss, ru.ru_maxrss / 1024)
    seconds = time.monotonic() - t0
    run = RetentionRun.objects.get(pk=run.pk)
    done = run.erased + run.anonymised
    return {"processed": done, "seconds": seconds, "rss_mb": max(_rss_mb(), child_rss), "status": run.status}


def child_walk(url: str, run_id: int, part: int, parts: int) -> None:
    _django(url)
    from crm.retention import services
    from crm.retention.models import RetentionRunSlice

    for i, sl in enumerate(RetentionRunSlice.objects.filter(run_id=run_id).order_by("lo")):
        if i % parts != part:
            continue
        cursor: int | None = sl.cursor
        while cursor is not None:
            cursor = services.retention_slice_advance(slice_id=sl.pk, expected_cursor=cursor, enqueue=False)


def _cutoff():
    from crm.retention import rules

    return rules.trigger_cutoff(AS_OF, 1095)


def child_queryset(url: str) -> dict:
    _django(url)
    from django.db.models import Q

    from crm.models import Customer

    cutoff = _cutoff()
    t0 = time.monotonic()
    q = Q(last_activity_at__lt=cutoff) | Q(last_activity_at__isnull=True, created_at__lt=cutoff)
    _total, per_model = Customer.objects.filter(q).delete()
    return {
        "processed": per_model.get("crm.Customer", 0),
        "seconds": time.monotonic() - t0,
        "rss_mb": _rss_mb(),
    }


def child_raw(url: str) -> dict:
    _django(url)
    from django.db import connection, transaction

    cutoff = _cutoff()
    match = "(last_activity_at < %s OR (last_activity_at IS NULL AND created_at < %s))"
    t0 = time.monotonic()
    with transaction.atomic(), connection.cursor() as cur:
        sub = f"SELECT id FROM crm_customer WHERE {match}"
        cur.execute(
            f"UPDATE crm_purchase SET customer_id = NULL WHERE customer_id IN ({sub})", [cutoff, cutoff]
        )
        cur.execute(f"DELETE FROM crm_customerevent WHERE customer_id IN ({sub})", [cutoff, cutoff])
        cur.execute(f"DELETE FROM crm_customer WHERE {match}", [cutoff, cutoff])
        n = cur.rowcount
    return {"processed": n, "seconds": time.monotonic() - t0, "rss_mb": _rss_mb()}


# --- orchestration -------------------------------------------------------------------------------------


def run_contender(url: str, name: str, extra: list[str], timeout: float) -> dict:
    """Run one contender on a fresh copy of the template, in its own process; peak RSS from wait4."""
    base = urlparse(url).path.lstrip("/")
    copy = f"{base}_{name}"
    with _admin_conn(url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{copy}"')
        admin.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{base}_tpl"')
    out = tempfile.NamedTemporaryFile("w+", suffix=".json", delete=False)
    try:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", name, "--url", _url_with_db(url, copy), *extra],
            stdout=out,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        result: dict = {}
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                _pid, status, ru = os.wait4(proc.pid, 0)
                result = {
                    "processed": 0,
                    "seconds": timeout,
                    "note": f"killed after {timeout:.0f}s (rolled back)",
                }
                break
            time.sleep(0.5)
        out.seek(0)
        lines = [line for line in out.read().splitlines() if line.startswith("{")]
        if lines:
            result = json.loads(lines[-1])
        elif not result:
            result = {"processed": 0, "seconds": 0, "note": f"failed (status {status})"}
        result["rss_mb"] = max(result.get("rss_mb", 0), ru.ru_maxrss / 1024)
        import psycopg

        with psycopg.connect(_url_with_db(url, copy), autocommit=True) as check:
            result["remaining"] = check.execute("SELECT count(*) FROM crm_customer").fetchone()[0]
            result["unlinked_purchases"] = check.execute(
                "SELECT count(*) FROM crm_purchase WHERE customer_id IS NULL"
            ).fetchone()[0]
            result["events"] = check.execute("SELECT count(*) FROM crm_customerevent").fetchone()[0]
        return result
    finally:
        out.close()
        os.unlink(out.name)
        with _admin_conn(url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{copy}"')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--matching", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--action", default="erase", choices=["erase", "anonymise"])
    parser.add_argument("--only", default="engine,queryset,raw_sql")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds per contender before it is killed"
    )
    parser.add_argument("--url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--part", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--parts", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.url:
        raise SystemExit(
            "DATABASE_URL (or --url) must name the benchmark database, e.g. …/crm_retention_bench"
        )

    if args.child:
        if args.child == "load":
            child_load(args.url, args.customers, args.matching)
            return
        if args.child == "walk":
            child_walk(args.url, args.run, args.part, args.parts)
            return
        fn = {
            "engine": lambda: child_engine(args.url, args.batch, args.workers, args.action),
            "queryset": lambda: child_queryset(args.url),
            "raw_sql": lambda: child_raw(args.url),
        }[args.child]
        print(json.dumps(fn()), flush=True)
        return

    build_template(args.url, args.customers, args.matching)
    results = {}
    for name in args.only.split(","):
        extra = ["--batch", str(args.batch), "--workers", str(args.workers), "--action", args.action]
        print(f"running {name} …", flush=True)
        results[name] = run_contender(args.url, name, extra if name == "engine" else [], args.timeout)
        print(f"  {json.dumps(results[name], ensure_ascii=False)}", flush=True)

    floor = results.get("raw_sql", {}).get("seconds")
    print()
    print(
        f"{args.customers:,} customers, {args.matching:,} matching, "
        f"action={args.action}, workers={args.workers}"
    )
    print(
        f"{'contender':<10} {'customers':>10} {'seconds':>9} {'cust/s':>9} "
        f"{'peak RSS MB':>12} {'vs raw':>7}  note"
    )
    for name, r in results.items():
        rate = r["processed"] / r["seconds"] if r.get("seconds") else 0
        ratio = f"{r['seconds'] / floor:.2f}x" if floor and r.get("processed") else "-"
        print(
            f"{name:<10} {r['processed']:>10,} {r['seconds']:>9.1f} {rate:>9,.0f} "
            f"{r['rss_mb']:>12.0f} {ratio:>7}  {r.get('note', '')} remaining={r['remaining']:,} "
            f"unlinked_purchases={r['unlinked_purchases']:,} "
            f"events={r['events']:,}"
        )


if __name__ == "__main__":
    main()
