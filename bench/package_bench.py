"""Building a disclosure package for one customer with 10,000 events and 1,000 consent rows, side by side with
a naive per-row ORM walk measured in the same run.

    createdb -h 127.0.0.1 -U root crm_package_bench
    export DATABASE_URL=postgres://root@127.0.0.1:5432/crm_package_bench
    python manage.py migrate
    python bench/package_bench.py [--events 10000] [--consents 1000] [--runs 5]

Seeds (once; --reseed to start again) one customer with `--events` behavioural events (COPY-free
bulk_create), `--consents` ledger rows through consent.services.consent_record (the one-statement write, so
the current-state table is right), 50 purchases, a legal hold, an objection and a 要配慮 record, then
VACUUM ANALYZE (the machine's PostgreSQL runs with autovacuum off). Then, `--runs` times each:

- ours, writer only: crm.disclosure.package.disclosure_package_write into memory (one streamed query per
  section; JSON + CSV + HTML);
- ours, whole build: consent.disclosure.services.disclosure_package_build (the writer, then sealing the ZIP
  under the field keys, the fsynced file, the publishing UPDATE) — the task's body;
- baseline: the naive walk a first version would write: every registered model's rows as model instances,
  each row's related codes (purpose, version) read through its foreign keys one query at a time, the
  personal fields read from the instance, and json.dumps of the result (JSON only: less output than ours).

Prints p50 / max in milliseconds, the number of SQL statements of one run, and the target (≤ 2,000 ms).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# As in production, the audit sealer is its own process: no chain sealing inside the measured commits.
os.environ.setdefault("AUDIT_SEAL_ON_COMMIT", "false")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from consent import services as consent_services  # noqa: E402
from consent.disclosure import services as package_services  # noqa: E402
from consent.disclosure.models import DisclosurePackage  # noqa: E402
from consent.requests.models import DataSubjectRequest, RequestState  # noqa: E402
from crm.classification import REGISTRY  # noqa: E402
from crm.disclosure import ModelSection, disclosure_sections, json_value  # noqa: E402
from crm.disclosure.package import disclosure_package_write  # noqa: E402
from crm.models import Customer, CustomerEvent, Purchase, Team  # noqa: E402
from crm.retention import services as retention  # noqa: E402

MARK = "BENCH-PKG"
EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def log(msg: str) -> None:
    print(msg, flush=True)


def seed(events: int, consents: int) -> Customer:
    from django.contrib.auth import get_user_model

    existing = Customer.objects.filter(member_no=MARK).first()
    if existing is not None:
        return existing
    team, _ = Team.objects.get_or_create(code="bench-package", defaults={"name": "開示ベンチ"})
    officer, _ = get_user_model().objects.get_or_create(username="bench-package-officer")
    customer = Customer(
        team=team, member_no=MARK, family_name="開示", given_name="太郎", family_name_kana="カイジ",
        given_name_kana="タロウ", email="bench.package@example.com", phone="+819012340000",
        address="千代田区丸の内1-1-1", collection_channel="web_form", notes="ベンチ用",
    )  # fmt: skip
    customer.refresh_blind_indexes()
    customer.save()
    CustomerEvent.objects.bulk_create(
        (
            CustomerEvent(
                customer=customer,
                visitor_id=f"v-{i % 7}",
                kind="page_view",
                source="web",
                occurred_at=EPOCH + dt.timedelta(minutes=i),
                properties={"path": f"/items/{i}", "ref": "bench"},
            )
            for i in range(events)
        ),
        batch_size=2000,
    )
    Purchase.objects.bulk_create(
        Purchase(
            customer=customer,
            team=team,
            order_no=f"{MARK}-{i}",
            amount=1000 + i,
            channel="web_form",
            purchased_at=EPOCH + dt.timedelta(days=i),
        )
        for i in range(50)
    )
    codes = ["marketing_email", "analytics", "personalisation"]
    evidence = {"source_ip": "203.0.113.9", "user_agent": "Mozilla/5.0 (bench)", "form_id": "bench"}
    for i in range(consents):
        consent_services.consent_record(
            purpose_code=codes[i % len(codes)], action="grant" if i % 2 == 0 else "withdraw",
            method="opt_in", channel="web_form", customer=customer, evidence=evidence,
            occurred_at=EPOCH + dt.timedelta(hours=i),
        )  # fmt: skip
    consent_services.consent_record(
        purpose_code="special_care_health",
        action="grant",
        method="opt_in",
        channel="web_form",
        customer=customer,
    )
    consent_services.special_care_record_create(
        customer=customer,
        purpose_code="special_care_health",
        kind="medical_history",
        content="小麦アレルギー",
    )
    consent_services.objection_record(customer=customer, scope="direct_marketing", source="admin")
    retention.legal_hold_place(customer_ids=[customer.pk], reason="litigation", placed_by=officer)
    with connection.cursor() as cur:
        for table in ("crm_customer", "crm_customerevent", "consent_consentevent", "consent_consentstate"):
            cur.execute(f"VACUUM ANALYZE {table}")
    return customer


def naive(customer_id: int) -> bytes:
    """The baseline: instances row by row, related codes through each row's foreign keys."""
    out: dict[str, Any] = {"sections": []}
    for section in disclosure_sections():
        if not isinstance(section, ModelSection):
            continue
        model = section.model_class()
        personal = REGISTRY.personal_fields(model._meta.label)
        rows = []
        for obj in model._default_manager.filter(**{section.customer: customer_id}):
            row: dict[str, Any] = {}
            for path in section.context:
                value: Any = obj
                for part in path.split("__"):
                    value = getattr(value, part, None) if value is not None else None
                row[path] = json_value(value if not hasattr(value, "_meta") else value.pk)
            for name in personal:
                row[name] = json_value(getattr(obj, model._meta.get_field(name).attname))
            rows.append(row)
        out["sections"].append({"key": section.key, "rows": rows})
    return json.dumps(out, ensure_ascii=False).encode()


def timed(fn: Callable[[], object], runs: int) -> tuple[list[float], int]:
    fn()  # warm-up
    connection.queries_log.clear()  # (a deque of 9,000: the baseline alone fills it)
    with CaptureQueriesContext(connection) as queries:
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples, len(queries)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--consents", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reseed", action="store_true")
    args = parser.parse_args()
    if args.reseed:
        Customer.objects.filter(member_no=MARK).update(member_no=None)
    started = time.perf_counter()
    customer = seed(args.events, args.consents)
    log(f"seeded in {time.perf_counter() - started:.1f} s (customer #{customer.pk})")
    settings.DISCLOSURE_PACKAGE_DIR = tempfile.mkdtemp(prefix="package-bench-")
    now = timezone.now()
    dsr = DataSubjectRequest.objects.create(
        kind="disclosure", channel="email", received_at=now, customer=customer
    )
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(
        identity_verified_at=now, state=RequestState.IN_PROGRESS
    )
    size = {}

    def writer() -> None:
        buf = io.BytesIO()
        contents = disclosure_package_write(out=buf, customer_id=customer.pk, language="ja", as_of=now)
        size["zip"] = buf.tell()
        size["rows"] = sum(contents.rows.values())

    def build() -> None:
        package = DisclosurePackage.objects.create(request=dsr, language="ja")
        assert package_services.disclosure_package_build(package_id=package.pk) == "ready"
        DisclosurePackage.objects.filter(pk=package.pk).update(state="expired")

    def baseline() -> None:
        size["naive"] = len(naive(customer.pk))

    results = {
        name: timed(fn, args.runs) for name, fn in (("writer", writer), ("build", build), ("naive", baseline))
    }
    log(
        f"\ncustomer with {args.events:,} events and {args.consents:,} consent rows: "
        f"{size['rows']:,} rows in the package, ZIP {size['zip'] / 1e6:.1f} MB "
        f"(naive JSON {size['naive'] / 1e6:.1f} MB)"
    )
    log(f"{'':38} {'p50 ms':>9} {'max ms':>9} {'SQL':>6}")
    labels = {
        "writer": "ours: writer (ZIP in memory)",
        "build": "ours: whole build (sealed, published)",
        "naive": "baseline: naive per-row ORM walk",
    }
    for name, (samples, queries) in results.items():
        log(f"{labels[name]:38} {statistics.median(samples):9.0f} {max(samples):9.0f} {queries:6d}")
    ratio = statistics.median(results["naive"][0]) / statistics.median(results["build"][0])
    log(f"\ntarget: whole build <= 2,000 ms; naive / ours (whole build) = {ratio:.1f}x")


if __name__ == "__main__":
    main()
