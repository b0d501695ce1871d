"""Incident scoping benchmark: find ~100,000 affected customers of 1,000,000, hold them, queue their notices.

    DATABASE_URL=postgres://root@127.0.0.1:5432/crm_bench_<name> DJANGO_ENV=test \\
        python bench/incident_scope_bench.py [--teams 1,2,3,4] [--channel web_form] [--baseline 5000]

Run it on your own copy of the shared 1M-customer database (createdb -T crm_bench crm_bench_<name>, then
migrate the copy): it writes incidents, affected people, legal holds and notices. Each run opens a new
incident, so runs do not disturb one another; VACUUM ANALYZE the copy before a run (autovacuum is off).

Measured, in this process (the code the Celery task runs, without the broker):

  scope     incidents.services.incident_scope_by_query + incident_scope_advance until done: batches of
            SCOPE_BATCH customer ids, each an INSERT … SELECT of the matching customers through the gate,
            their legal holds (crm.retention.legal_hold_place) and the batch's audit entry, one commit each;
            the hold placement's share of it is timed separately and printed beside it;
  queue     incidents.services.incident_notices_queue: one INSERT … SELECT of a notice per affected person;
  baseline  the ORM per-row path for the same work (per customer: get_or_create the affected row, create its
            legal hold, create its notice), on the first --baseline matching customers of a second incident,
            extrapolated to the same count (printed as such).

Target: scope + queue <= 60 s for ~100,000 of 1,000,000 on the 2-core machine. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["DEBUG"] = "0"  # no query log in memory

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from crm.models import Customer, LegalHold  # noqa: E402
from crm.permissions import ROLE_PRIVACY  # noqa: E402
from incidents import services  # noqa: E402
from incidents.models import Incident, IncidentAffected, IncidentNotice, IncidentScope  # noqa: E402

AWARE = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))


def _officer():
    user, created = get_user_model().objects.get_or_create(
        username="bench-privacy", defaults={"is_staff": True}
    )
    if created:
        user.set_unusable_password()
        user.save()
        user.groups.add(Group.objects.get(name=ROLE_PRIVACY))
    return get_user_model().objects.get(pk=user.pk)


def _incident(officer, title: str) -> Incident:
    return services.incident_create(
        actor=officer,
        title=title,
        kind=Incident.Kind.UNAUTHORISED_ACCESS,
        discovered_at=AWARE,
        aware_at=AWARE,
    )


def run_scope(officer, teams: list[int], channel: str) -> dict[str, float]:
    incident = _incident(officer, "bench: scope")
    hold_seconds = 0.0
    place = services.legal_hold_place

    def timed_place(**kwargs):
        nonlocal hold_seconds
        started = time.perf_counter()
        try:
            return place(**kwargs)
        finally:
            hold_seconds += time.perf_counter() - started

    services.legal_hold_place = timed_place  # the service module's own name for it
    started = time.perf_counter()
    try:
        scope = services.incident_scope_by_query(
            incident=incident, actor=officer, team_ids=teams, channel=channel, enqueue=False
        )
        batches = 0
        while services.incident_scope_advance(scope_id=scope.pk):
            batches += 1
            if batches % 25 == 0:
                print(f"  progress {IncidentScope.objects.get(pk=scope.pk).progress}%", flush=True)
        batches += 1
    finally:
        services.legal_hold_place = place
    scope_seconds = time.perf_counter() - started
    scope.refresh_from_db()
    started = time.perf_counter()
    queued = services.incident_notices_queue(incident=incident, actor=officer, enqueue=False)
    queue_seconds = time.perf_counter() - started
    held = LegalHold.objects.filter(reference=incident.reference, released_at__isnull=True).count()
    return {
        "incident": incident.pk,
        "affected": scope.added,
        "held": held,
        "queued": queued,
        "batches": batches,
        "scope_s": scope_seconds,
        "hold_s": hold_seconds,
        "queue_s": queue_seconds,
    }


def run_baseline(officer, teams: list[int], channel: str, limit: int) -> dict[str, float]:
    """The ORM, row by row: what a straightforward implementation does for each affected customer."""
    incident = _incident(officer, "bench: per-row baseline")
    scope = IncidentScope.objects.create(
        incident=incident, method=IncidentScope.Method.QUERY, created_by=officer
    )
    ids = list(
        Customer.objects.restrict(officer, "view")
        .filter(team_id__in=teams, collection_channel=channel)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    started = time.perf_counter()
    for customer_id in ids:
        with transaction.atomic():
            IncidentAffected.objects.get_or_create(
                incident=incident, customer_id=customer_id, defaults={"scope": scope}
            )
            LegalHold.objects.create(
                customer_id=customer_id,
                reason=LegalHold.Reason.INCIDENT,
                placed_by=officer,
                reference=incident.reference,
            )
            IncidentNotice.objects.get_or_create(incident=incident, customer_id=customer_id)
    seconds = time.perf_counter() - started
    return {"rows": len(ids), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teams", default="1,2,3,4")
    parser.add_argument("--channel", default="web_form")
    parser.add_argument("--baseline", type=int, default=2000, help="customers for the per-row baseline")
    args = parser.parse_args()
    teams = [int(t) for t in args.teams.split(",")]
    officer = _officer()
    total = Customer.objects.count()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    print(f"customers {total:,}; PostgreSQL {version}; teams {teams}, channel {args.channel}", flush=True)

    result = run_scope(officer, teams, args.channel)
    base = run_baseline(officer, teams, args.channel, args.baseline)
    per_row = base["seconds"] / max(1, base["rows"])
    extrapolated = per_row * result["affected"]
    work = result["scope_s"] + result["queue_s"]
    print()
    print(f"{'path':<44}{'people':>10}{'seconds':>10}{'people/s':>10}")
    print(
        f"{'scope (batched, set-based), incl. holds':<44}{result['affected']:>10,}{result['scope_s']:>10.1f}"
        f"{result['affected'] / result['scope_s']:>10,.0f}"
    )
    print(
        f"{'  of which hold placement':<44}{result['held']:>10,}{result['hold_s']:>10.1f}"
        f"{result['held'] / max(result['hold_s'], 1e-9):>10,.0f}"
    )
    print(
        f"{'queue notices (INSERT … SELECT)':<44}{result['queued']:>10,}{result['queue_s']:>10.1f}"
        f"{result['queued'] / max(result['queue_s'], 1e-9):>10,.0f}"
    )
    print(
        f"{'scope + queue (target <= 60 s)':<44}{result['affected']:>10,}{work:>10.1f}"
        f"{result['affected'] / work:>10,.0f}"
    )
    print(
        f"{'baseline: ORM per row, measured':<44}{base['rows']:>10,}{base['seconds']:>10.1f}"
        f"{1 / per_row:>10,.0f}"
    )
    print(
        f"{'baseline: ORM per row, extrapolated':<44}{result['affected']:>10,}{extrapolated:>10.1f}"
        f"{1 / per_row:>10,.0f}"
    )
    print(
        f"\n{result['batches']} batches of {services.SCOPE_BATCH:,} ids; incident INC-{result['incident']}; "
        f"set-based path {extrapolated / work:.0f}x faster than the per-row baseline"
    )


if __name__ == "__main__":
    main()
