"""The request desk's queue at 10,000 open requests and 1,000,000 customers: ours against a stock ModelAdmin.

    createdb -h 127.0.0.1 -U root -T crm_bench crm_bench_desk          # a copy of the seeded million
    export DATABASE_URL=postgres://root@127.0.0.1:5432/crm_bench_desk
    python manage.py migrate
    python bench/request_queue_bench.py [--open 10000] [--closed 20000] [--requests 50]

Loads `--open` open requests (every open state, deadlines spread over ±30 days, 10 handlers, most linked to
a random customer of the million) and `--closed` completed ones when the table holds fewer, then
`VACUUM ANALYZE`. Times real admin views through Django's test Client (sessions, full middleware, templates
rendered, DEBUG off), 3 warm-up requests then `--requests` timed ones, and prints p50/p95 with the SQL
statements of one request:

- ours: the support lead's queue (every open request, nearest deadline first), "overdue", "due within 3 days",
  one kind, one handler, and a handler's own queue (the gate's `handler_id = me`);
- baseline, same table, same run: a stock `ModelAdmin` on a separate AdminSite with the same columns and
  `list_filter = ("state", "kind", "handler")` — Django's paginator (COUNT(*)), full result count, facets
  allowed, a RelatedFieldListFilter over the user table, ordering by the deadline.

Not a test: the numbers depend on the machine; the script prints them beside the target (p95 ≤ 100 ms).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from _common import Timings, django_setup

django_setup()

from django.contrib import admin  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import clear_url_caches, path  # noqa: E402
from django.utils import timezone  # noqa: E402

from consent.requests.models import DataSubjectRequest, RequestKind, RequestState  # noqa: E402
from crm.models import Customer  # noqa: E402
from crm.permissions import ROLE_SUPPORT, ROLE_SUPPORT_LEAD  # noqa: E402

TARGET_MS = 100.0
OPEN = [
    RequestState.RECEIVED,
    RequestState.IDENTITY,
    RequestState.IN_PROGRESS,
    RequestState.AWAITING_APPROVAL,
]


class StockRequestAdmin(admin.ModelAdmin):
    """What `admin.site.register(DataSubjectRequest)` gives with the queue's columns and filters."""

    list_display = ("__str__", "kind", "state", "handler", "received_at", "due_on", "jurisdiction")
    list_filter = ("state", "kind", "handler")
    ordering = ("due_on",)


stock_site = admin.AdminSite(name="stockdesk")
stock_site.register(DataSubjectRequest, StockRequestAdmin)


def add_stock_urls() -> None:
    from config import urls

    urls.urlpatterns.insert(0, path("stockdesk/", stock_site.urls))
    clear_url_caches()


def bench_user(username: str, role: str, superuser: bool = False) -> object:
    user, _ = get_user_model().objects.get_or_create(
        username=username,
        defaults={"is_staff": True, "is_superuser": superuser, "email": f"{username}@bench.example.jp"},
    )
    user.groups.add(Group.objects.get(name=role))
    return user


def signed_in(user: object) -> Client:
    """A client signed in as `user` with the second factor given in its session (crm.signin asks it of
    whoever sees personal data in clear)."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    client = Client()
    client.force_login(user)
    device, _ = TOTPDevice.objects.get_or_create(user=user, name="bench", defaults={"confirmed": True})
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def load_requests(n_open: int, n_closed: int, handlers: list[object]) -> None:
    """Open and closed requests up to the wanted numbers (bulk_create: the encrypted fields are encrypted by
    the fields themselves; audit entries are not the point here)."""
    have_open = DataSubjectRequest.objects.filter(state__in=OPEN).count()
    have_closed = DataSubjectRequest.objects.exclude(state__in=OPEN).count()
    rng = random.Random(14)
    max_customer = Customer.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    kinds = [k.value for k in RequestKind]
    now = timezone.now()

    def make(state: str) -> DataSubjectRequest:
        received = now - dt.timedelta(days=rng.randint(0, 44), minutes=rng.randint(0, 1440))
        request = DataSubjectRequest(
            state=state,  # the protected field's first value, given when the object is made
            kind=rng.choice(kinds),
            jurisdiction=rng.choice(["appi", "gdpr", "both"]),
            channel=rng.choice(["phone", "letter", "email", "web_form", "api"]),
            received_at=received,
            requester_email=f"bench{rng.randint(1, 10**9)}@example.jp",
            handler=rng.choice([*handlers, None]),
            customer_id=rng.randint(1, max_customer) if rng.random() < 0.7 and max_customer else None,
        )
        request.refresh_due_dates()
        return request

    batch: list[DataSubjectRequest] = []
    wanted = [rng.choice(OPEN) for _ in range(max(0, n_open - have_open))]
    wanted += [RequestState.COMPLETED] * max(0, n_closed - have_closed)
    for state in wanted:
        batch.append(make(state))
        if len(batch) == 2000:
            _insert(batch)
            batch = []
    if batch:
        _insert(batch)
    if wanted:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE consent_datasubjectrequest")
        print(f"loaded {len(wanted)} requests; VACUUM ANALYZE done (autovacuum is off on this machine)")


def _insert(batch: list[DataSubjectRequest]) -> None:
    # Requests linked to a customer id that a gap left unused would break the foreign key: keep existing ones.
    ids = {r.customer_id for r in batch if r.customer_id}
    real = set(Customer.objects.filter(pk__in=ids).values_list("pk", flat=True))
    for r in batch:
        if r.customer_id not in real:
            r.customer_id = None
    DataSubjectRequest.objects.bulk_create(batch)


@dataclass
class Result(Timings):
    label: str
    times_ms: list[float]
    queries: int
    rows: int


def measure(client: Client, label: str, url: str, n: int, rows: Callable[[object], int]) -> Result:
    for _ in range(3):
        response = client.get(url)
        assert response.status_code == 200, (label, response.status_code)
    # Counted with a wrapper: Django's request_started signal resets the query log a capture would read.
    statements: list[str] = []

    def count(execute: Callable, sql: str, params: object, many: bool, context: object) -> object:
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = client.get(url)
    times = []
    for _ in range(n):
        began = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200
    result = Result(label, times, len(statements), rows(response))
    verdict = "" if label.startswith("stock") else ("  OK" if result.p95 <= TARGET_MS else "  over target")
    print(
        f"  {label:<40} p50 {result.p50:7.1f} ms  p95 {result.p95:7.1f} ms  {result.queries:2d} queries"
        f"  {result.rows:3d} rows{verdict}",
        flush=True,
    )
    return result


def shown(response: object) -> int:
    return len(response.context_data["cl"].result_list)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--open", type=int, default=10_000)
    parser.add_argument("--closed", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()

    customers = Customer.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    handlers = [bench_user(f"bench_desk{i}", ROLE_SUPPORT) for i in range(10)]
    lead = bench_user("bench_desk_lead", ROLE_SUPPORT_LEAD)
    load_requests(args.open, args.closed, handlers)
    open_count = DataSubjectRequest.objects.filter(state__in=OPEN).count()
    total = DataSubjectRequest.objects.count()
    print(f"customers (max id) {customers:,}; requests {total:,} of which open {open_count:,}")

    add_stock_urls()
    lead_client = signed_in(lead)
    handler_client = signed_in(handlers[0])
    stock_client = signed_in(bench_user("bench_desk_root", ROLE_SUPPORT_LEAD, superuser=True))
    queue = "/admin/consent/datasubjectrequest/"
    results = [
        measure(lead_client, "queue, lead (all open, nearest due)", queue, args.requests, shown),
        measure(lead_client, "queue, lead, overdue", f"{queue}?due=overdue", args.requests, shown),
        measure(lead_client, "queue, lead, due within 3 days", f"{queue}?due=soon", args.requests, shown),
        measure(
            lead_client, "queue, lead, kind=disclosure", f"{queue}?kind=disclosure", args.requests, shown
        ),
        measure(
            lead_client, "queue, lead, one handler", f"{queue}?handler={handlers[1].pk}", args.requests, shown
        ),
        measure(handler_client, "queue, handler (own requests)", queue, args.requests, shown),
        measure(
            stock_client,
            "stock ModelAdmin (baseline)",
            "/stockdesk/consent/datasubjectrequest/",
            args.requests,
            shown,
        ),
        measure(
            stock_client,
            "stock ModelAdmin, state filter (baseline)",
            "/stockdesk/consent/datasubjectrequest/?state__exact=received",
            args.requests,
            shown,
        ),
    ]
    ours = max(r.p95 for r in results if not r.label.startswith("stock"))
    stock = results[-2]
    print(
        f"\nworst p95 of ours {ours:.1f} ms (target ≤ {TARGET_MS:.0f} ms); "
        f"stock list p50 {stock.p50:.1f} ms, "
        f"ours (lead's queue) p50 {results[0].p50:.1f} ms"
    )


if __name__ == "__main__":
    main()
