"""Analytics at a million customers: RFM beside a hand-written SQL floor and pandas, the CLV fit, the
10,000,000-row purchase import (bench/README.md). Prints numbers; asserts nothing.

    export DATABASE_URL=postgres://root@127.0.0.1:5432/crm_bench_analytics   # a copy, never crm_bench
    python bench/analytics_bench.py rfm [--rounds 2]
    python bench/analytics_bench.py clv [--calibration-end 2026-06-06 --holdout-end 2026-12-06]
    python bench/analytics_bench.py import [--rows 10000000 --customers 500000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

import numpy as np  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from crm.analytics import services  # noqa: E402
from crm.analytics.eligibility import eligible_customers  # noqa: E402
from crm.analytics.models import PurchaseImport  # noqa: E402
from crm.models import Customer, Purchase, Team  # noqa: E402


def vacuum(*tables: str) -> None:
    """autovacuum is off on this machine: reclaim dead rows and refresh statistics between rounds."""
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


# --- RFM ---------------------------------------------------------------------------------------------------

FLOOR = """
CREATE TEMP TABLE rfm_floor AS
SELECT customer_id, recency_days, frequency, monetary,
       ntile(5) OVER (ORDER BY recency_days DESC, customer_id) AS r,
       ntile(5) OVER (ORDER BY frequency, customer_id) AS f,
       ntile(5) OVER (ORDER BY monetary, customer_id) AS m
FROM (
    SELECT customer_id, %(as_of)s::date - max(day) AS recency_days, count(*) AS frequency,
           sum(spend) AS monetary
    FROM (
        SELECT p.customer_id, (p.purchased_at AT TIME ZONE 'Asia/Tokyo')::date AS day, sum(p.amount) AS spend
        FROM crm_purchase p JOIN crm_customer c ON c.id = p.customer_id
        WHERE p.purchased_at < %(end)s AND c.status = 'active'
          AND NOT EXISTS (SELECT 1 FROM consent_objection o WHERE o.customer_id = c.id)
        GROUP BY 1, 2
    ) days GROUP BY customer_id
) per_customer
"""


def rfm_pandas(as_of: dt.date) -> int:
    """The same computation in pandas: read the eligible customers' purchases (COPY to CSV), then group."""
    import pandas as pd

    buf = io.BytesIO()
    with connection.cursor() as cursor, cursor.connection.cursor() as raw:
        with raw.copy(
            "COPY (SELECT p.customer_id, (p.purchased_at AT TIME ZONE 'Asia/Tokyo')::date, p.amount "
            "FROM crm_purchase p JOIN crm_customer c ON c.id = p.customer_id WHERE c.status = 'active' "
            "AND NOT EXISTS (SELECT 1 FROM consent_objection o WHERE o.customer_id = c.id)) "
            "TO STDOUT (FORMAT csv)"
        ) as copy:
            for block in copy:
                buf.write(block)
    buf.seek(0)
    df = pd.read_csv(buf, names=["customer_id", "day", "amount"], parse_dates=["day"])
    df = df[df["day"] <= pd.Timestamp(as_of)]
    days = df.groupby(["customer_id", "day"], sort=False)["amount"].sum().reset_index()
    per = days.groupby("customer_id").agg(
        last=("day", "max"), frequency=("day", "size"), monetary=("amount", "sum")
    )
    per["recency_days"] = (pd.Timestamp(as_of) - per["last"]).dt.days
    n = len(per)
    for col, ascending in (("recency_days", False), ("frequency", True), ("monetary", True)):
        order = per[col].rank(method="first", ascending=ascending)
        per[col[0] + "_score"] = np.ceil(order * 5 / n).astype(int)
    return n


def bench_rfm(rounds: int) -> None:
    as_of = timezone.localdate()
    end = services._day_end(as_of)
    print(
        f"RFM as of {as_of}: {Customer.objects.count():,} customers, {Purchase.objects.count():,} purchases"
    )
    rows = []
    for i in range(rounds):
        vacuum("crm_rfmscore", "crm_rfmrun")
        floor_s, _ = timed(lambda: _floor(as_of, end))
        ours_s, run = timed(lambda: services.rfm_compute(eligible=eligible_customers(), as_of=as_of))
        pandas_s, n = timed(lambda: rfm_pandas(as_of))
        rows.append((floor_s, ours_s, pandas_s))
        print(
            f"round {i + 1}: floor (one hand-written statement) {floor_s:6.2f} s | "
            f"ours (rfm_compute, stored, audited) {ours_s:6.2f} s = {ours_s / floor_s:4.2f}x floor | "
            f"pandas {pandas_s:6.2f} s = {pandas_s / floor_s:4.2f}x floor | "
            f"customers scored {run.customers:,} (pandas {n:,})"
        )
    best = [min(col) for col in zip(*rows, strict=True)]
    print(
        f"best: floor {best[0]:.2f} s, ours {best[1]:.2f} s ({best[1] / best[0]:.2f}x), "
        f"pandas {best[2]:.2f} s"
    )


def _floor(as_of: dt.date, end: dt.datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS rfm_floor")
        cursor.execute("SET work_mem = '256MB'")
        cursor.execute(FLOOR, {"as_of": as_of, "end": end})
        cursor.execute("RESET work_mem")


# --- CLV ---------------------------------------------------------------------------------------------------


def bench_clv(calibration_end: dt.date, holdout_end: dt.date | None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    vacuum("crm_clvscore", "crm_clvfit")
    seconds, fit = timed(
        lambda: services.clv_fit_run(
            eligible=eligible_customers(), calibration_end=calibration_end, holdout_end=holdout_end
        )
    )
    print(json.dumps(services.clv_fit_summary(fit), ensure_ascii=False, indent=1))
    print(f"CLV fit + predictions stored for {fit.customers:,} customers: {seconds:.1f} s (target ≤ 60 s)")


# --- import ------------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: int, customers: int, seed: int = 18, typed: Path | None = None) -> None:
    """`rows` purchases of `customers` external ids over two years, in chunks (never the whole file); another
    `seed` gives other rows and other external ids (a second import into the same copy).

    With `typed`, the same rows are also written there as they end up in crm_purchase (customer id, team,
    amount, quantity, category, currency, channel, instant, key; COPY text format, in the import's
    (customer, instant) order): the table floor's input."""
    rng = np.random.default_rng(seed)
    prefix = "BI" if seed == 18 else f"B{seed}"
    start = dt.datetime(2025, 1, 1).timestamp()
    cats = np.array(
        ["books", "food", "drink", "fashion", "shoes", "beauty", "home", "toys", "sports", "music"]
    )
    chans = np.array(["web_form", "app", "store_pos", "event", ""])
    kept: list[tuple[Any, ...]] = []
    with path.open("w", encoding="utf-8") as out:
        out.write("external_id,purchased_at,amount,quantity,category,channel\n")
        done = 0
        while done < rows:
            n = min(500_000, rows - done)
            ids = rng.integers(0, customers, n)
            secs = start + rng.integers(0, 730 * 86400, n)
            stamps = np.array(secs, dtype="datetime64[s]").astype(str)
            amounts = rng.integers(100, 30000, n)
            qty = rng.integers(1, 4, n)
            cat = cats[rng.integers(0, len(cats), n)]
            chan = chans[rng.integers(0, len(chans), n)]
            out.write(
                "".join(
                    f"{prefix}-{i:07d},{s},{a},{q},{c},{h}\n"
                    for i, s, a, q, c, h in zip(ids, stamps, amounts, qty, cat, chan, strict=True)
                )
            )
            if typed is not None:
                kept.append((ids, secs, amounts, qty, cat, chan))
            done += n
    if typed is not None:
        _write_typed(typed, kept, rng)


def _write_typed(path: Path, kept: list[tuple[Any, ...]], rng: Any) -> None:
    """The rows of write_csv as crm_purchase holds them, sorted as the import inserts them."""
    ids, secs, amounts, qty, cat, chan = (np.concatenate(parts) for parts in zip(*kept, strict=True))
    order = np.lexsort((secs, ids))
    stamps = np.array(secs, dtype="datetime64[s]").astype(str)
    with path.open("w", encoding="utf-8") as out:
        for first in range(0, len(order), 500_000):
            part = order[first : first + 500_000]
            keys = rng.bytes(16 * len(part)).hex()
            out.write(
                "".join(
                    f"{i}\t{a}\t{q}\t{c}\t{h or 'import'}\t{s}+09\t{keys[32 * j : 32 * j + 32]}\n"
                    for j, (i, s, a, q, c, h) in enumerate(
                        zip(*(column[part] for column in (ids, stamps, amounts, qty, cat, chan)), strict=True)
                    )
                )
            )


def bench_import(rows: int, customers: int, seed: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = Path(tempfile.gettempdir()) / f"analytics-bench-{rows}-{seed}.csv"
    typed = path.with_suffix(".typed")
    seconds, _ = timed(lambda: write_csv(path, rows, customers, seed, typed=typed))
    size = path.stat().st_size
    print(f"generated {rows:,} rows ({size / 1e6:.0f} MB) in {seconds:.0f} s")
    team, _ = Team.objects.get_or_create(code="bench-import", defaults={"name": "bench import"})
    try:
        # the floor: the file COPYed as it is into an unlogged table (reading + parsing only)
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS import_floor")
            cursor.execute(
                "CREATE UNLOGGED TABLE import_floor (external_id text, purchased_at text, amount text, "
                "quantity text, category text, channel text)"
            )
        floor_s, _ = timed(lambda: _copy_floor(path))
        table_s = _copy_table_floor(typed)
        print(
            f"floors: raw COPY of the file {floor_s:.1f} s = {rows / floor_s:,.0f} rows/s; the same rows "
            "already typed, COPYed into a table like crm_purchase (its indexes, logged, one transaction) "
            f"{table_s:.1f} s = {rows / table_s:,.0f} rows/s"
        )
        for label in ("first import", "re-import (idempotent)"):
            batch = PurchaseImport.objects.create(team=team, file_name=path.name)
            with path.open("rb") as stream:
                ours_s, batch = timed(
                    lambda s=stream, b=batch: services.purchase_import_run(batch_id=b.pk, stream=s)
                )
            print(
                f"{label}: {ours_s:6.1f} s = {rows / ours_s:,.0f} rows/s (target ≥ 50,000) | "
                f"raw COPY {floor_s:5.1f} s, table floor {table_s:5.1f} s (ours {ours_s / table_s:.1f}×) | "
                f"inserted {batch.rows_inserted:,}, duplicates {batch.rows_duplicate:,}, "
                f"invalid {batch.rows_invalid:,}, customers created {batch.customers_created:,}"
            )
            vacuum("crm_purchase", "crm_customer")
    finally:
        path.unlink(missing_ok=True)
        typed.unlink(missing_ok=True)
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS import_floor")


def _copy_floor(path: Path) -> None:
    with connection.cursor() as cursor, cursor.connection.cursor() as raw, path.open("rb") as stream:
        with raw.copy("COPY import_floor FROM STDIN (FORMAT csv, HEADER true)") as copy:
            while block := stream.read(8 * 1024 * 1024):
                copy.write(block)


def _copy_table_floor(typed: Path) -> float:
    """The table's own floor: rows needing no check, no lookup and no key, COPYed in the import's order into
    a new table with crm_purchase's columns, defaults and indexes (no triggers: nothing to check), in one
    transaction like the import's. Dropped after."""
    columns = "customer_id, amount, quantity, category, channel, purchased_at, import_key"
    team = Team.objects.get(code="bench-import").pk
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS import_table_floor")
        cursor.execute(
            "CREATE TABLE import_table_floor "
            "(LIKE crm_purchase INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING INDEXES)"
        )
        cursor.execute(f"ALTER TABLE import_table_floor ALTER COLUMN team_id SET DEFAULT {int(team)}")
        cursor.execute("ALTER TABLE import_table_floor ALTER COLUMN currency SET DEFAULT 'JPY'")
        cursor.execute("ALTER TABLE import_table_floor ALTER COLUMN created_at SET DEFAULT now()")
    start = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor, cursor.connection.cursor() as raw:
        with raw.copy(f"COPY import_table_floor ({columns}) FROM STDIN") as copy, typed.open("rb") as stream:
            while block := stream.read(8 * 1024 * 1024):
                copy.write(block)
    seconds = time.perf_counter() - start
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE import_table_floor")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    rfm = sub.add_parser("rfm")
    rfm.add_argument("--rounds", type=int, default=2)
    clv_p = sub.add_parser("clv")
    today = timezone.localdate()
    clv_p.add_argument("--calibration-end", default=str(today - dt.timedelta(days=182)))
    clv_p.add_argument("--holdout-end", default=str(today))
    imp = sub.add_parser("import")
    imp.add_argument("--rows", type=int, default=10_000_000)
    imp.add_argument("--customers", type=int, default=500_000)
    imp.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    if "crm_bench_" not in connection.settings_dict["NAME"]:
        sys.exit("Run against a copy of crm_bench (crm_bench_<name>), never crm_bench itself.")
    if args.what == "rfm":
        bench_rfm(args.rounds)
    elif args.what == "clv":
        bench_clv(dt.date.fromisoformat(args.calibration_end), dt.date.fromisoformat(args.holdout_end))
    else:
        bench_import(args.rows, args.customers, args.seed)


if __name__ == "__main__":
    main()
