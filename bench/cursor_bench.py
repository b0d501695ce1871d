"""What binding the API's statements on the server (and preparing them) would save, statement by statement.

    DATABASE_URL=postgres://root@127.0.0.1:5432/crm_apibench python bench/cursor_bench.py [--repeat 2000]

Run after bench/api_bench.py on the same database (it uses that bench's client, team and customers). Records
the statements (SQL and parameters) one consent write runs through the integration API, with and without an
Idempotency-Key (Django's test client, in this process), then replays each of them `--repeat` times on two
connections to the same database, alternately in blocks of 100:
  - `django`: Django's own cursor (client-side binding: PostgreSQL parses and plans every execution);
  - `bound`: a second alias with Django's documented `OPTIONS={"server_side_binding": True}` and psycopg's
    `prepare_threshold` (5), so the statement is prepared on the server after five executions: what
    crm.rawsql did for these statements through `DatabaseWrapper._prepare_cursor` until 2026-12-06.
Each replay runs in a transaction that is rolled back (the writes stay unwritten), the same for both.
Prints, per statement, the mean wall time and the CPU time of this process per execution (µs); wall minus
CPU is mostly PostgreSQL's work and the round trip. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "false")
BLOCK = 100


def _record(token: str, body: str, idempotent: bool) -> list[tuple[str, list[object]]]:
    """The statements of one consent write, recorded inside a transaction that is rolled back, so that the
    ids and the key it uses stay free for the replays."""
    import uuid

    from django.db import connection, transaction
    from django.test import Client

    seen: list[tuple[str, list[object]]] = []

    def wrapper(execute, sql, params, many, context):
        if sql.lstrip().split(None, 1)[0].upper() in ("SELECT", "INSERT", "UPDATE", "WITH"):  # not savepoints
            seen.append((sql, list(params or [])))
        return execute(sql, params, many, context)

    def post() -> int:
        headers = {"Authorization": f"Bearer {token}"}
        if idempotent:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        return (
            Client(HTTP_HOST="127.0.0.1")
            .post("/api/v1/consents", data=body, content_type="application/json", headers=headers)
            .status_code
        )

    post()  # the steady state: permission cache, statements compiled once per process
    with transaction.atomic():
        with connection.execute_wrapper(wrapper):
            status = post()
        transaction.set_rollback(True)
    if status >= 300:
        raise SystemExit(f"the consent write answered {status}")
    return seen


def _replay(alias: str, sql: str, params: list[object], n: int) -> tuple[float, float]:
    from django.db import connections, transaction

    wall = cpu = 0.0
    for _ in range(n):
        with transaction.atomic(using=alias):
            w, c = time.perf_counter(), time.process_time()
            with connections[alias].cursor() as cur:
                cur.execute(sql, params)
                if cur.description is not None:
                    cur.fetchall()
            wall += time.perf_counter() - w
            cpu += time.process_time() - c
            transaction.set_rollback(True, using=alias)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=2000, help="executions per statement and cursor")
    args = parser.parse_args()

    import django
    from django.conf import settings

    bound = copy.deepcopy(settings.DATABASES["default"])
    bound["OPTIONS"] = {**bound.get("OPTIONS", {}), "server_side_binding": True, "prepare_threshold": 5}
    settings.DATABASES["bound"] = bound
    django.setup()

    import json
    import uuid

    from crm.integrations.models import ApiScope
    from crm.integrations.services import api_client_create
    from crm.models import Customer, Team

    team = Team.objects.filter(code="api-bench").first()
    customer = Customer.objects.filter(team=team, external_id__startswith="API-BENCH-").first()
    if customer is None:
        raise SystemExit("Run bench/api_bench.py on this database first.")
    _client, token = api_client_create(
        name=f"cursor-bench-{uuid.uuid4().hex[:8]}",
        team=team,
        scopes=[ApiScope.CONSENTS_WRITE],
        rate_limit_per_minute=1_000_000_000,
    )
    body = json.dumps(
        {
            "purpose_code": "marketing_email",
            "action": "grant",
            "method": "opt_in",
            "external_id": customer.external_id,
        }
    )
    statements = _record(token, body, idempotent=False) + _record(token, body, idempotent=True)
    statements = list({sql: (sql, params) for sql, params in statements}.values())  # each statement once

    print(f"{len(statements)} statements, {args.repeat} executions each per cursor, blocks of {BLOCK}")
    print(f"{'statement':<60} {'django wall':>11} {'bound wall':>10} {'django CPU':>10} {'bound CPU':>9}  µs")
    totals = {"django": [0.0, 0.0], "bound": [0.0, 0.0]}
    for sql, params in statements:
        spent = {"django": [0.0, 0.0], "bound": [0.0, 0.0]}
        for alias in ("django", "bound"):  # warm-up: the bound one is prepared after five
            _replay("default" if alias == "django" else alias, sql, params, 10)
        for _ in range(max(1, args.repeat // BLOCK)):
            for alias in ("django", "bound"):
                wall, cpu = _replay("default" if alias == "django" else alias, sql, params, BLOCK)
                spent[alias][0] += wall
                spent[alias][1] += cpu
        n = max(1, args.repeat // BLOCK) * BLOCK
        per = {a: (w / n * 1e6, c / n * 1e6) for a, (w, c) in spent.items()}
        for alias in totals:
            totals[alias][0] += per[alias][0]
            totals[alias][1] += per[alias][1]
        label = " ".join(sql.split())[:58]
        print(
            f"{label:<60} {per['django'][0]:>11.0f} {per['bound'][0]:>10.0f} "
            f"{per['django'][1]:>10.0f} {per['bound'][1]:>9.0f}"
        )
    print(
        f"{'sum (one write with and without a key, each statement once)':<60} {totals['django'][0]:>11.0f} "
        f"{totals['bound'][0]:>10.0f} {totals['django'][1]:>10.0f} {totals['bound'][1]:>9.0f}"
    )
    print(f"load average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
