"""The cost of writing a provision record before an export (APPI 29), side by side with the export's own
read, at a million customers.

    createdb -h 127.0.0.1 -U root -T crm_bench crm_bench_<you>     # a copy of the seeded database
    export DATABASE_URL=postgres://root@127.0.0.1:5432/crm_bench_<you>
    python manage.py migrate
    python bench/provision_bench.py [--sizes 1000 10000 50000] [--repeat 5]

For each export size N (random customers of every team), with p50/p95 over --repeat runs:
- baseline: the export's read alone — the customers through the gate (`restrict`), e-mail and family name
  decrypted, as `provision_export` streams them;
- record only: `provision_record` (the gate check of the ids, the record, N subject links in one
  bulk insert, its audit entry);
- export: `provision_export` whole (record, access entry, then the same read).
Every run is rolled back: the database is left as it was.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.db import transaction  # noqa: E402
from django.db.models import Max, Min  # noqa: E402

from consent.provision import services  # noqa: E402
from consent.provision.models import Recipient  # noqa: E402
from crm.models import Customer  # noqa: E402
from crm.permissions import ROLE_PRIVACY  # noqa: E402

FIELDS = ["email", "family_name"]
NOTIFIED = datetime.date(2026, 1, 5)


class Rollback(Exception):
    pass


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    try:
        with transaction.atomic():
            fn()
            raise Rollback
    except Rollback:
        pass
    return (time.perf_counter() - start) * 1000


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    user_model = get_user_model()
    officer, _created = user_model.objects.get_or_create(
        username="bench_provision", defaults={"is_staff": True}
    )
    officer.groups.add(Group.objects.get(name=ROLE_PRIVACY))
    officer = user_model.objects.get(pk=officer.pk)
    partner, _created = Recipient.objects.get_or_create(
        name="bench-partner", defaults={"kind": Recipient.Kind.THIRD_PARTY, "country": "JP"}
    )
    bounds = Customer.objects.aggregate(lo=Min("pk"), hi=Max("pk"))
    total = Customer.objects.count()
    print(f"customers: {total:,}  (ids {bounds['lo']}–{bounds['hi']})")
    rng = random.Random(16)

    def sample(n: int) -> list[int]:
        picked = rng.sample(range(bounds["lo"], bounds["hi"] + 1), n * 2)
        return list(Customer.objects.filter(pk__in=picked).values_list("pk", flat=True)[:n])

    def read(ids: list[int]) -> int:
        rows = Customer.objects.restrict(officer, "view").filter(pk__in=ids).order_by("pk")
        return sum(1 for c in rows.iterator(chunk_size=500) if [getattr(c, f) for f in FIELDS])

    def record(ids: list[int]) -> None:
        services.provision_record(
            actor=officer,
            recipient=partner,
            customer_ids=ids,
            data_items=[f"crm.Customer.{f}" for f in FIELDS],
            basis="opt_out",
            opt_out_notified_on=NOTIFIED,
        )

    def export(ids: list[int]) -> None:
        _record, rows = services.provision_export(
            actor=officer,
            recipient=partner,
            customer_ids=ids,
            fields=FIELDS,
            basis="opt_out",
            opt_out_notified_on=NOTIFIED,
        )
        assert sum(1 for _row in rows) == len(ids) + 1

    print(
        f"{'N':>7} | {'baseline read p50/p95 ms':>26} | {'record only p50/p95':>22} | {'export p50/p95':>18}"
    )
    for n in args.sizes:
        results: dict[str, list[float]] = {"read": [], "record": [], "export": []}
        for _ in range(args.repeat):
            ids = sample(n)
            results["read"].append(timed(lambda ids=ids: read(ids)))
            results["record"].append(timed(lambda ids=ids: record(ids)))
            results["export"].append(timed(lambda ids=ids: export(ids)))
        cells = {k: f"{statistics.median(v):8.0f} / {pct(v, 95):6.0f}" for k, v in results.items()}
        print(f"{n:>7} | {cells['read']:>26} | {cells['record']:>22} | {cells['export']:>18}")


if __name__ == "__main__":
    main()
