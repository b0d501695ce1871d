"""Audit chain benchmark: the keyset verifier against loading the whole trail at once, and the cost of a
chained write.

    DATABASE_URL=postgres://root@127.0.0.1:5432/crm_bench python bench/audit_chain.py [--entries 50000]

Everything happens in one transaction that is rolled back at the end, so the database is left as it was;
the audit table must be empty (use a scratch database). Writes --entries chained entries quickly (hashes
computed here, rows inserted with bulk_create, the head set), then:

- verify: crm.audit.audit_chain_verify (keyset batches of 2,000) — time, entries/s, peak Python memory;
- baseline: the same walk over `list(AuditEntry.objects.order_by("chain_seq"))` — one query, every row
  in memory at once;
- write: 300 entries through AuditEntry.objects.create (advisory lock, chain, signed head) beside 300
  plain INSERTs of the same row without the chain.

Not a test: the numbers depend on the machine. Times are the best of three runs; peak memory is measured
in a separate pass under tracemalloc.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "false")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.contenttypes.models import ContentType  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from crm.audit.verification import audit_chain_verify  # noqa: E402
from crm.models import GENESIS_HASH, AuditChainHead, AuditEntry, Customer  # noqa: E402


class Rollback(Exception):
    """Raised at the end to discard everything the benchmark wrote."""


def seed(n: int) -> None:
    """n valid chained entries, as UPDATE summaries of customers (no personal values)."""
    ct = ContentType.objects.get_for_model(Customer)
    previous, batch = GENESIS_HASH, []
    now = timezone.now()
    for seq in range(1, n + 1):
        entry = AuditEntry(
            content_type=ct,
            object_pk=str(seq),
            object_id=seq,
            object_repr=f"顧客 #{seq}",
            action=AuditEntry.Action.UPDATE,
            changes={"status": ["active", "closed"], "email": ["[redacted]", "[redacted]"]},
            timestamp=now,
            chain_seq=seq,
        )
        entry.chain_hash = entry.compute_chain_hash(previous)
        previous = entry.chain_hash
        batch.append(entry)
        if len(batch) == 5000:
            AuditEntry.objects.bulk_create(batch)
            batch = []
    AuditEntry.objects.bulk_create(batch)
    AuditChainHead.advance(seq=n, chain_hash=previous)


def naive_verify() -> int:
    """The baseline: every entry loaded in one list, then the same recomputation."""
    previous, checked = GENESIS_HASH, 0
    for entry in list(AuditEntry.objects.order_by("chain_seq")):
        assert entry.compute_chain_hash(previous) == entry.chain_hash
        previous, checked = entry.chain_hash, checked + 1
    return checked


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best of `repeat` runs (the machine is shared: the minimum is the least disturbed one)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_mib(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    fn()
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def writes(n: int) -> tuple[float, float]:
    """ms per chained entry (model save) and per plain INSERT of the same columns."""
    ct = ContentType.objects.get_for_model(Customer)

    def chained() -> None:
        for i in range(n):
            AuditEntry.objects.create(
                content_type=ct, object_pk=str(i), object_repr=f"顧客 #{i}", action=AuditEntry.Action.ACCESS
            )

    def plain() -> None:
        with connection.cursor() as cur:
            for i in range(n):
                cur.execute(
                    "INSERT INTO crm_auditentry (content_type_id, object_pk, object_repr, action,"
                    " changes_text, timestamp, chain_hash) VALUES (%s, %s, %s, 3, '', now(), '')",
                    [ct.pk, str(i), f"顧客 #{i}"],
                )

    chained_s, _ = timed(chained)
    plain_s, _ = timed(plain)
    return chained_s / n * 1000, plain_s / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--writes", type=int, default=300)
    args = parser.parse_args()
    if settings.PRODUCTION:
        sys.exit("Refusing to run in production.")
    if AuditEntry.objects.exists():
        sys.exit("The audit table is not empty: run against a scratch database.")

    try:
        with transaction.atomic():
            seed_s, _ = timed(lambda: seed(args.entries))
            verify_s, report = timed(audit_chain_verify, repeat=3)
            assert report.ok and report.checked == args.entries, report
            naive_s, checked = timed(naive_verify, repeat=3)
            assert checked == args.entries
            verify_mib = peak_mib(audit_chain_verify)
            naive_mib = peak_mib(naive_verify)
            chained_ms, plain_ms = writes(args.writes)
            raise Rollback
    except Rollback:
        pass

    n = args.entries
    print(f"audit chain, {n:,} entries (seeded in {seed_s:.1f} s; all rolled back)")
    print(f"{'':34}{'keyset verify':>16}{'load-all baseline':>20}")
    print(f"{'time':34}{verify_s:>14.2f} s{naive_s:>18.2f} s")
    print(f"{'entries/s':34}{n / verify_s:>16,.0f}{n / naive_s:>20,.0f}")
    print(f"{'peak Python memory (tracemalloc)':34}{verify_mib:>12.1f} MiB{naive_mib:>16.1f} MiB")
    print(
        f"write, {args.writes} entries one by one (ms/entry){'':2}{'chained + head':>16}{'plain INSERT':>20}"
    )
    print(f"{'':34}{chained_ms:>13.2f} ms{plain_ms:>17.2f} ms")


if __name__ == "__main__":
    main()
