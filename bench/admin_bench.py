"""Admin benchmark at one million customers: our CustomerAdmin against a stock ModelAdmin, same table.

    DATABASE_URL=postgres://root@127.0.0.1:5432/crm_bench python bench/admin_bench.py [--requests 50]
    … python bench/admin_bench.py --compare-checkout ../before --requests 60   # before and after, one run

Seeds the database up to --customers (default 1,000,000; crm seed_customers) when it holds fewer, then
times real admin views through Django's test Client (logged-in users, sessions in the database, full
middleware, templates rendered) and prints p50/p95 per scenario with the number of SQL queries of one
request. The baseline is a stock `ModelAdmin` on a separate AdminSite over the same Customer table:
default paginator (COUNT(*)), full result count, `icontains` search on member_no, all columns loaded.

With --compare-checkout PATH (repeatable), the bench of another checkout of this project (an earlier commit)
runs first, in its own process on the same database (its own `migrate` included), then this checkout migrates
the database and runs its own; the tables are printed side by side. Give the checkouts oldest first, and run
that only once per database: the later checkouts' migrations stay applied. An earlier checkout whose own
bench cannot sign in any more (the second factor came later) can be given a copy of this script (and of
bench/_common.py).

Users who see personal data in clear need a second factor (crm.signin): the bench gives its users a
confirmed TOTP device and a session verified with it, as after a real sign-in (django-otp's session key).

Not a test: the numbers depend on the machine; the script prints them beside the targets.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

from _common import ROOT, Timings, django_setup

django_setup()

from django.contrib import admin  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import clear_url_caches, path  # noqa: E402

from crm import services  # noqa: E402
from crm.admin.customers import CustomerAdmin  # noqa: E402
from crm.models import Customer, Team, TeamMembership  # noqa: E402
from crm.paginators import table_estimate  # noqa: E402
from crm.permissions import ROLE_PRIVACY, ROLE_STAFF  # noqa: E402

# Targets at 1,000,000 customers on a 2-core machine (issue #12): p95 of the staff list and of an exact
# search, and how many times faster than the stock ModelAdmin the list's first page is (p50).
LIST_TARGET_MS = 50.0
SEARCH_TARGET_MS = 50.0
RATIO_TARGET = 3.0

# --- the baseline: a stock ModelAdmin over the same table ------------------------------------------


class StockCustomerAdmin(admin.ModelAdmin):
    """What `admin.site.register(Customer)` gives with a search box: nothing tuned."""

    list_display = ("__str__", "member_no", "team", "status", "last_activity_at")
    search_fields = ("member_no",)


class StockSamePageAdmin(StockCustomerAdmin):
    """The stock admin showing as many rows a page as ours (Django's default is 100): the ratio without the
    page size in it."""

    list_per_page = CustomerAdmin.list_per_page


stock_site = admin.AdminSite(name="stockadmin")
stock_site.register(Customer, StockCustomerAdmin)
stock_same_page_site = admin.AdminSite(name="stockadmin_same_page")
stock_same_page_site.register(Customer, StockSamePageAdmin)

bench_urls = types.ModuleType("bench_urls")
from config import urls as project_urls  # noqa: E402

bench_urls.urlpatterns = [
    path("stock-admin/", stock_site.urls),
    path("stock-admin-same-page/", stock_same_page_site.urls),
    *project_urls.urlpatterns,
]
sys.modules["bench_urls"] = bench_urls


# --- set-up ----------------------------------------------------------------------------------------


def ensure_customers(target: int, workers: int) -> int:
    have = table_estimate("default", Customer._meta.db_table) or 0
    if have < target * 0.99:
        have = Customer.objects.count()
    if have < target:
        print(f"seeding {target - have} customers (have {have}) …", flush=True)
        call_command("seed_customers", count=target - have, teams=5, workers=workers, vacuum=True)
        have = Customer.objects.count()
    return have


def bench_user(username: str, role: str, team: Team | None) -> object:
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(
        username=username, defaults={"is_staff": True, "email": f"{username}@bench.example.jp"}
    )
    user.groups.add(Group.objects.get(name=role))
    if team is not None:
        services.team_member_add(team=team, user=user, role=TeamMembership.Role.MEMBER)
    return user


def signed_in(user: object) -> Client:
    """A client signed in as `user`, with the second factor given in its session where crm.signin asks for
    one (django-otp keeps the verified device's id in the session; OTPMiddleware loads it per request)."""
    client = Client()
    client.force_login(user)
    try:
        from django_otp import DEVICE_ID_SESSION_KEY
        from django_otp.plugins.otp_totp.models import TOTPDevice
    except ImportError:  # a checkout from before the second factor
        return client
    device, _ = TOTPDevice.objects.get_or_create(user=user, name="bench", defaults={"confirmed": True})
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


@dataclass
class Target:
    """One customer the staff user may see, and the terms that must find it."""

    pk: int
    email: str
    phone: str
    name: str
    member_no: str


def sample_targets(team: Team, n: int) -> list[Target]:
    # Random customers of the team (not the first page): a search must not be helped by a warm page.
    ids = list(Customer.objects.filter(team=team).values_list("id", flat=True))
    picked = random.Random(7).sample(ids, min(n, len(ids)))
    rows = Customer.objects.filter(pk__in=picked).only(
        "email", "phone", "family_name", "given_name", "member_no"
    )
    return [
        Target(
            pk=c.pk,
            email=c.email,
            phone=c.phone.replace("+81", "0", 1),  # as people type it: national format
            name=f"{c.family_name} {c.given_name}",
            member_no=c.member_no,
        )
        for c in rows
    ]


# --- measuring -------------------------------------------------------------------------------------


@dataclass
class Result(Timings):
    label: str
    user: str
    times_ms: list[float]
    queries: int
    target_ms: float | None
    sql_ms: list[float]

    @property
    def sql_p50(self) -> float:
        return statistics.median(self.sql_ms)


def measure(
    client: Client,
    label: str,
    user: str,
    url_for: Callable[[int], str],
    n: int,
    target_ms: float | None,
    expect: Callable[[int], str] | None = None,
    warmup: int = 3,
) -> Result:
    for i in range(warmup):
        response = client.get(url_for(i))
        assert response.status_code == 200, (label, response.status_code)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url_for(0))
    queries = len(ctx.captured_queries)
    times: list[float] = []
    sql: list[float] = []
    in_sql = [0.0]

    def timed(execute: Callable, sql_text: str, params: object, many: bool, context: object) -> object:
        began = time.perf_counter()
        try:
            return execute(sql_text, params, many, context)
        finally:
            in_sql[0] += time.perf_counter() - began

    for i in range(n):
        in_sql[0] = 0.0
        with connection.execute_wrapper(timed):
            began = time.perf_counter()
            response = client.get(url_for(i))
            times.append((time.perf_counter() - began) * 1000)
        sql.append(in_sql[0] * 1000)
        assert response.status_code == 200, (label, response.status_code)
        if expect is not None:
            assert expect(i) in response.content.decode(), (label, i)
    result = Result(label, user, times, queries, target_ms, sql)
    print(
        f"  {label:<34} {user:<8} p50 {result.p50:8.1f} ms  p95 {result.p95:8.1f} ms"
        f"  (SQL p50 {result.sql_p50:.1f} ms)",
        flush=True,
    )
    return result


# --- before and after in one run ---------------------------------------------------------------------


def run_checkout(path: Path, args: argparse.Namespace) -> dict[tuple[str, str], tuple[float, ...]]:
    """Run the bench of another checkout (same database, same interpreter and environment), echo its output,
    and return its summary table: (scenario, user) -> (p50, p95, SQL p50, queries)."""
    script = path / "bench" / "admin_bench.py"
    commit = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"=== earlier checkout: {path} (commit {commit or '?'}) ===", flush=True)
    command = [sys.executable, str(script), "--requests", str(args.requests)]
    command += ["--customers", str(args.customers), "--workers", str(args.workers)]
    proc = subprocess.Popen(command, cwd=path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        print(f"  | {line}", end="", flush=True)
        lines.append(line.rstrip("\n"))
    if proc.wait() != 0:
        raise SystemExit(f"the bench of {path} failed (exit {proc.returncode})")
    rows: dict[tuple[str, str], tuple[float, ...]] = {}
    start = next(i for i, line in enumerate(lines) if line.startswith("scenario"))
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        # The fixed-width table of main() below (the same in the earlier checkout).
        label, user, numbers = line[:36].strip(), line[36:45].strip(), line[45:88].split()
        rows[(label, user)] = tuple(float(x) for x in numbers[1:5])
    return rows


Summary = dict[tuple[str, str], tuple[float, ...]]


def print_comparison(earlier: list[tuple[str, Summary]], after: list[Result]) -> None:
    """p50/p95 of every scenario, for each earlier checkout (in the order run) and this one."""
    print()
    print("p50 / p95 ms per checkout, same database, one run (queries of one request in brackets):")
    names = [name for name, _rows in earlier] + ["this checkout"]
    print(f"{'scenario':<36}{'user':<9}" + "".join(f"{n[-22:]:>24}" for n in names) + f"{'target':>8}  ok")
    for r in after:
        cells = []
        for _name, rows in earlier:
            b = rows.get((r.label, r.user))
            cells.append(f"{b[0]:.1f} / {b[1]:.1f} ({b[3]:.0f})" if b else "-")
        cells.append(f"{r.p50:.1f} / {r.p95:.1f} ({r.queries})")
        target = f"≤{r.target_ms:.0f}" if r.target_ms else "-"
        ok = "" if r.target_ms is None else ("yes" if r.p95 <= r.target_ms else "NO")
        print(f"{r.label:<36}{r.user:<9}" + "".join(f"{c:>24}" for c in cells) + f"{target:>8}  {ok}")
    stock = next(r for r in after if r.label == "STOCK list, first page")
    for user in ("staff", "privacy"):
        ours = next(r for r in after if r.label == "list, first page" and r.user == user)
        parts = []
        for name, rows in earlier:
            b_stock, b_ours = (
                rows.get(("STOCK list, first page", "privacy")),
                rows.get(("list, first page", user)),
            )
            if b_stock and b_ours:
                parts.append(f"{name}: {b_stock[0] / b_ours[0]:.1f}×")
        ratio = stock.p50 / ours.p50
        verdict = "yes" if ratio >= RATIO_TARGET else "NO"
        parts.append(f"this checkout: {ratio:.1f}× (target ≥{RATIO_TARGET:.0f}×: {verdict})")
        print(f"stock/ours, list first page p50 ({user}): " + ", ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--compare-checkout",
        type=Path,
        metavar="PATH",
        action="append",
        default=[],
        help="another checkout (the code before a change): its bench runs first on the same database; "
        "repeatable, run in the order given",
    )
    args = parser.parse_args()
    earlier = [(p.resolve().name, run_checkout(p.resolve(), args)) for p in args.compare_checkout]
    if earlier:
        print(f"=== this checkout: {ROOT} ===", flush=True)

    from django.conf import settings

    settings.ROOT_URLCONF = "bench_urls"
    clear_url_caches()

    call_command("migrate", verbosity=0)
    # The migrations since an earlier checkout's run may have rewritten the customer table or added columns
    # without statistics, and autovacuum is off on this machine (crm.W002): give the planner what autovacuum
    # would have by the time anyone uses the list.
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {Customer._meta.db_table}")
    total = ensure_customers(args.customers, args.workers)
    teams = list(Team.objects.order_by("id")[:5])
    team = teams[0]
    staff = bench_user("bench_staff", ROLE_STAFF, team)
    privacy = bench_user("bench_privacy", ROLE_PRIVACY, None)
    team_rows = Customer.objects.filter(team=team).count()
    n = args.requests
    targets = sample_targets(team, n + 3)
    print(
        f"customers: {total}  teams: {Team.objects.count()}  staff team '{team.code}': {team_rows} rows  "
        f"cpus: {os.cpu_count()}  load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )

    def nth(i: int) -> Target:
        return targets[i % len(targets)]

    def shows(i: int) -> str:
        # The row link of the searched customer: its str() carries only the id (no personal data).
        return f"顧客 #{nth(i).pk}</a>"

    changelist = "/admin/crm/customer/"
    stock_changelist = "/stock-admin/crm/customer/"
    results: list[Result] = []
    for username, user in (("staff", staff), ("privacy", privacy)):
        client = signed_in(user)
        results.append(measure(client, "list, first page", username, lambda i: changelist, n, LIST_TARGET_MS))
        for kind in ("email", "phone", "name", "member_no"):
            # Each request searches another customer. A name is shared by a few hundred people, so the
            # searched one need not be on the first page; the others must show exactly that customer.
            results.append(
                measure(
                    client,
                    f"exact search: {kind}",
                    username,
                    lambda i, k=kind: f"{changelist}?q={quote_plus(getattr(nth(i), k))}",
                    n,
                    SEARCH_TARGET_MS,
                    expect=(lambda i: "顧客 #") if kind == "name" else shows,
                )
            )

    client = signed_in(privacy)
    stock_list = measure(client, "STOCK list, first page", "privacy", lambda i: stock_changelist, n, None)
    stock_search = measure(
        client,
        "STOCK search: member_no icontains",
        "privacy",
        lambda i: f"{stock_changelist}?q={nth(i).member_no}",
        n,
        None,
        expect=shows,
    )
    stock_same_page = measure(
        client,
        f"STOCK list, {CustomerAdmin.list_per_page} rows a page",
        "privacy",
        lambda i: "/stock-admin-same-page/crm/customer/",
        n,
        None,
    )
    results += [stock_list, stock_search, stock_same_page]

    ours_list = next(r for r in results if r.user == "privacy" and r.label == "list, first page")
    ours_search = next(r for r in results if r.user == "privacy" and r.label == "exact search: member_no")
    print()
    print(
        f"{'scenario':<36}{'user':<9}{'n':>4}{'p50 ms':>10}{'p95 ms':>10}{'SQL p50':>10}{'queries':>9}"
        f"{'target':>10}  ok"
    )
    for r in results:
        target = f"≤{r.target_ms:.0f}" if r.target_ms else "-"
        ok = "" if r.target_ms is None else ("yes" if r.p95 <= r.target_ms else "NO")
        row = (
            f"{r.label:<36}{r.user:<9}{len(r.times_ms):>4}{r.p50:>10.1f}{r.p95:>10.1f}{r.sql_p50:>10.1f}"
            f"{r.queries:>9}"
        )
        print(f"{row}{target:>10}  {ok}")
    print()
    staff_list = next(r for r in results if r.user == "staff" and r.label == "list, first page")
    per_page = f"stock {StockCustomerAdmin.list_per_page} rows a page, ours {CustomerAdmin.list_per_page}"
    for ours, who in ((ours_list, "privacy, all teams"), (staff_list, "staff, one team, masked")):
        ratio = stock_list.p50 / ours.p50
        print(
            f"list, first page ({who}; {per_page}): stock p50 {stock_list.p50:.1f} ms"
            f" / ours {ours.p50:.1f} ms"
            f" = {ratio:.1f}× (p95: {stock_list.p95 / ours.p95:.1f}×)  target ≥{RATIO_TARGET:.0f}×: "
            f"{'yes' if ratio >= RATIO_TARGET else 'NO'}; the stock admin at our page size: "
            f"{stock_same_page.p50 / ours.p50:.1f}×"
        )
    print(
        f"database time in those requests (SQL p50): stock {stock_list.sql_p50:.1f} ms / ours "
        f"{ours_list.sql_p50:.1f} ms = {stock_list.sql_p50 / max(ours_list.sql_p50, 0.001):.1f}×; "
        f"the rest is Django rendering the page"
    )
    print(
        f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cpus"
    )
    print(
        f"search by member number: stock p50 {stock_search.p50:.1f} ms / ours {ours_search.p50:.1f} ms"
        f" = {stock_search.p50 / ours_search.p50:.1f}× (p95: {stock_search.p95 / ours_search.p95:.1f}×)"
    )
    if earlier:
        print_comparison(earlier, results)


if __name__ == "__main__":
    main()
