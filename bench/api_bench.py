"""Integration API throughput: recording consent events through gunicorn under a loopback load generator.

    DATABASE_URL=postgres://root@127.0.0.1:5432/crm_api python bench/api_bench.py [--duration 10]

Starts gunicorn (config.wsgi, `--workers` processes, DEBUG off) on 127.0.0.1 only, creates a bench team, an
API client (rate limit lifted) and 300 customers (each consent write picks one at random), then drives
three scenarios side by side over `--procs` × `--threads` keep-alive connections, each scenario bounded by
`--duration` seconds (and, with the Python generator, `--max-requests` requests). The load generator is wrk
(Debian package `wrk`: C, two threads, a Lua script for the bodies and keys) when installed, else
`--procs` Python processes × `--threads` threads (`--loadgen python`), which take a good share of the two
cores themselves:

    health          GET  /api/v1/health               baseline: server + framework, no database
    consent         POST /api/v1/consents             token auth, rate limit, restrict() gate, ledger row,
                                                      current state, audit entry (hash chain)
    consent+idem    POST /api/v1/consents             the same with a fresh Idempotency-Key per request
                                                      (stored answer: the full production path)

The scenarios run interleaved `--rounds` times (default 3) and the median round is printed with the
throughput of every round, so that a slow minute of a shared machine does not land on one scenario only.
Prints requests/s, p50 and p95 per scenario and the target (≥ 400 consent writes/s on this 2-core machine),
with the SQL statements and the CPU time of one request of each scenario in one process (how fast the
machine is that day: compare runs by these before comparing their requests/s).
The load generator shares the two cores with the server, so the figures are a floor. Consent rows are
append-only (the ledger refuses DELETE): point DATABASE_URL at a throwaway database.
Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "false")
HOST = "127.0.0.1"  # loopback only, never another address
TARGET_RPS = 400
SCENARIOS = ("health", "consent", "consent+idem")


BENCH_PREFIX = "API-BENCH-"
BENCH_CUSTOMERS = 300


def _setup() -> tuple[str, str]:
    """Bench team, client and customer (through the services). Returns (token, external id)."""
    import django

    django.setup()
    from django.core.management import call_command

    from crm import services
    from crm.integrations.models import ApiScope
    from crm.integrations.services import api_client_create
    from crm.models import Customer, Team

    call_command("migrate", verbosity=0)
    team, _created = Team.objects.get_or_create(code="api-bench", defaults={"name": "APIベンチ"})
    _client, token = api_client_create(
        name=f"bench-{uuid.uuid4().hex[:8]}",
        team=team,
        scopes=[ApiScope.CONSENTS_WRITE],
        rate_limit_per_minute=1_000_000_000,
    )
    # Many customers, as on a real site: writes for one customer serialise on its current-state row.
    have = set(
        Customer.objects.filter(external_id__startswith=BENCH_PREFIX).values_list("external_id", flat=True)
    )
    for i in range(BENCH_CUSTOMERS):
        if f"{BENCH_PREFIX}{i}" not in have:
            services.customer_create(
                team=team,
                external_id=f"{BENCH_PREFIX}{i}",
                family_name="ベンチ",
                collection_channel=Customer.Channel.WEB_FORM,
            )
    external_id = BENCH_PREFIX
    from django.db import connections

    connections.close_all()
    return token, external_id


def _statements_and_round_trip(
    token: str, external_id: str
) -> tuple[dict[str, int], dict[str, float], float]:
    """Machine-independent context for the figures: SQL statements one request of each scenario runs
    (in-process, same code path; BEGIN/COMMIT are not counted), the CPU time of one request of each in this
    process (Django's test client, no HTTP server), and the mean latency of one `SELECT 1` round trip now."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    http = Client(HTTP_HOST=HOST)

    def send(scenario: str) -> None:
        method, path, body, headers = _request(scenario, token, external_id)
        headers = {k: v for k, v in headers.items() if k != "Content-Type"}
        if method == "GET":
            http.get(path, headers=headers)
        else:
            http.post(path, data=body, content_type="application/json", headers=headers)

    counts, cpu = {}, {}
    for scenario in SCENARIOS:
        send(scenario)  # the second request is the steady state (permission cache, last-use time)
        with CaptureQueriesContext(connection) as ctx:
            send(scenario)
        counts[scenario] = len(ctx.captured_queries)
        start = time.process_time()
        for _ in range(CPU_SAMPLE):
            send(scenario)
        cpu[scenario] = (time.process_time() - start) / CPU_SAMPLE * 1000
    with connection.cursor() as cur:
        start = time.perf_counter()
        for _ in range(200):
            cur.execute("SELECT 1")
            cur.fetchone()
        round_trip = (time.perf_counter() - start) / 200 * 1000
    connection.close()
    return counts, cpu, round_trip


CPU_SAMPLE = 200  # requests per scenario timed in-process


# Tables every consent write adds dead row versions to: the audit entry (sealed by an UPDATE), the current
# state (an upsert per write, on 300 customers here), the chain head.
WRITE_TABLES = ("crm_auditentry", "crm_auditchainhead", "consent_consentstate", "consent_consentevent")


def _vacuum_if_autovacuum_is_off() -> bool:
    """VACUUM (ANALYZE) what the writes churn when the server runs without autovacuum (this machine's
    PostgreSQL has it off; production must not: `manage.py check --database default` warns, crm.W002).
    Without it dead versions pile up run after run, and the sealer's scan of its queue slows down with
    them: a long-lived bench database measured ~25 % fewer writes/s than a fresh one."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SHOW autovacuum")
        if cur.fetchone()[0] == "on":
            return False
        for table in WRITE_TABLES:
            cur.execute(f"VACUUM (ANALYZE) {table}")
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _start_server(port: int, workers: int, threads: int) -> subprocess.Popen[bytes]:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    cmd = [
        str(gunicorn),
        "config.wsgi:application",
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--keep-alive",
        "5",
        "--log-level",
        "warning",
    ]
    env = {**os.environ, "DEBUG": "false", "LOG_LEVEL": "ERROR"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/api/v1/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    _stop_server(proc)
    raise SystemExit("gunicorn did not start within 30 s")


def _start_sealer() -> subprocess.Popen[bytes] | None:
    """The audit sealer process beside the server, as in production (`manage.py audit_sealer`): it shares the
    cores with the server. None for code that still sealed inside the web processes (an older checkout)."""
    if not (ROOT / "crm" / "management" / "commands" / "audit_sealer.py").exists():
        return None
    anchor = Path(tempfile.mkdtemp(prefix="api-bench-")) / "audit-anchor.jsonl"  # never the checkout's own
    env = {**os.environ, "DEBUG": "false", "LOG_LEVEL": "ERROR", "AUDIT_ANCHOR_PATH": str(anchor)}
    cmd = [sys.executable, str(ROOT / "manage.py"), "audit_sealer"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL)


def _group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) of the living processes of process group `pgid` (a server or the sealer,
    each started in its own session), from /proc; 0.0 where /proc is not there."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(fields[2]) == pgid:  # pgrp; utime and stime follow at 11 and 12
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _pending_entries() -> int:
    from crm.models import AuditEntry

    return AuditEntry.objects.filter(chain_seq=None).count()


def _stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _request(scenario: str, token: str, external_id: str) -> tuple[str, str, bytes | None, dict[str, str]]:
    if scenario == "health":
        return "GET", "/api/v1/health", None, {}
    customer = (
        f"{external_id}{random.randrange(BENCH_CUSTOMERS)}" if external_id == BENCH_PREFIX else external_id
    )
    body = json.dumps(
        {"purpose_code": "marketing_email", "action": "grant", "method": "opt_in", "external_id": customer}
    ).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if scenario == "consent+idem":
        headers["Idempotency-Key"] = uuid.uuid4().hex
    return "POST", "/api/v1/consents", body, headers


def _load_process(
    scenario: str,
    port: int,
    token: str,
    external_id: str,
    threads: int,
    deadline: float,
    quota: int,
    out: mp.Queue,
) -> None:
    """One load-generator process: `threads` keep-alive connections, each sending until deadline or quota."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal errors
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        mine: list[float] = []
        bad = 0
        for _ in range(quota):
            if time.time() >= deadline:
                break
            method, path, body, headers = _request(scenario, token, external_id)
            start = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status < 300
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=30)
                ok = False
            mine.append(time.perf_counter() - start)
            bad += not ok
        conn.close()
        with lock:
            latencies.extend(mine)
            errors += bad

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((latencies, errors))


def _run(
    scenario: str, args: argparse.Namespace, port: int, token: str, external_id: str
) -> dict[str, float]:
    connections = args.procs * args.threads
    quota = max(1, args.max_requests // connections)
    queue: mp.Queue = mp.Queue()
    start = time.time()
    deadline = start + args.duration
    procs = [
        mp.Process(
            target=_load_process,
            args=(scenario, port, token, external_id, args.threads, deadline, quota, queue),
        )
        for _ in range(args.procs)
    ]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.time() - start
    latencies = sorted(x for lat, _e in results for x in lat)
    errors = sum(e for _lat, e in results)
    n = len(latencies)
    return {
        "requests": n,
        "errors": errors,
        "rps": (n - errors) / elapsed if elapsed else 0.0,
        "p50": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p95": latencies[int(0.95 * (n - 1))] * 1000 if latencies else 0.0,
        "seconds": elapsed,
    }


WRK_SCRIPT = """
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local token, prefix, customers, scenario = "%(token)s", "%(prefix)s", %(customers)d, "%(scenario)s"
local hex = "0123456789abcdef"
local function uuid()
  local t = {}
  for i = 1, 32 do local r = math.random(16) t[i] = hex:sub(r, r) end
  return table.concat(t)
end
request = function()
  if scenario == "health" then return wrk.format("GET", "/api/v1/health") end
  local body = '{"purpose_code": "marketing_email", "action": "grant", "method": "opt_in", "external_id": "'
    .. prefix .. math.random(0, customers - 1) .. '"}'
  local headers = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}
  if scenario == "consent+idem" then headers["Idempotency-Key"] = uuid() end
  return wrk.format("POST", "/api/v1/consents", headers, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  local failed = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("WRK %%d %%d %%d %%d %%d\\n", summary.requests, failed, summary.duration,
    latency:percentile(50), latency:percentile(95)))
  io.write(string.format("WRKERR connect=%%d read=%%d write=%%d status=%%d timeout=%%d\\n", e.connect, e.read,
    e.write, e.status, e.timeout))
end
"""


def _run_wrk(
    scenario: str, args: argparse.Namespace, port: int, token: str, external_id: str
) -> dict[str, float]:
    """The same scenario driven by wrk (C, one thread per core): the generator takes little of the CPU."""
    import tempfile

    script = WRK_SCRIPT % {
        "token": token,
        "prefix": external_id,
        "customers": BENCH_CUSTOMERS,
        "scenario": scenario,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        out = subprocess.run(
            [
                "wrk",
                "-t",
                "2",
                "-c",
                str(args.procs * args.threads),
                "-d",
                f"{args.duration:g}s",
                "-s",
                lua.name,
                f"http://{HOST}:{port}",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    detail = next(x for x in out.splitlines() if x.startswith("WRKERR "))
    if " 0 " not in f" {detail.split('=', 1)[0]} " and any(not p.endswith("=0") for p in detail.split()[1:]):
        print(f"  {scenario}: wrk errors {detail[7:]}", flush=True)
    n, errors, micros, p50, p95 = (int(x) for x in line.split()[1:])
    return {
        "requests": n,
        "errors": errors,
        "rps": (n - errors) / (micros / 1e6),
        "p50": p50 / 1000,
        "p95": p95 / 1000,
        "seconds": micros / 1e6,
    }


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main() -> None:
    # Celery's app puts the working directory on sys.path: run from a checkout of other code (a worktree
    # of an older commit, for a comparison), the in-process part would otherwise import that code.
    os.chdir(ROOT)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--server-threads", type=int, default=2, help="threads per gunicorn worker")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--threads", type=int, default=8, help="connections per load-generator process")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario (upper bound)")
    parser.add_argument(
        "--max-requests", type=int, default=20_000, help="requests per scenario (upper bound)"
    )
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="wrk (Debian package `wrk`) when installed, else the Python generator",
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    args = parser.parse_args()
    if args.loadgen == "auto":
        args.loadgen = "wrk" if shutil.which("wrk") else "python"
    scenarios = [x for x in args.scenarios.split(",") if x in SCENARIOS]
    run = _run_wrk if args.loadgen == "wrk" else _run

    token, external_id = _setup()
    statements, cpu, round_trip = _statements_and_round_trip(token, external_id)
    port = _free_port()
    server = _start_server(port, args.workers, args.server_threads)
    sealer = _start_sealer()
    rounds: dict[str, list[dict[str, float]]] = {scenario: [] for scenario in scenarios}
    try:
        for scenario in scenarios:
            # Warm every worker (imports, DB connections) before measuring.
            run(
                scenario,
                argparse.Namespace(**{**vars(args), "duration": 1.0, "max_requests": 200}),
                port,
                token,
                external_id,
            )
        # Scenarios interleaved, `--rounds` times: a slow minute of a shared machine hits all of them.
        procs = (("server", server), ("sealer", sealer))
        cpu_before = {name: _group_cpu_seconds(p.pid) for name, p in procs if p}
        for _round in range(args.rounds):
            for scenario in scenarios:
                _vacuum_if_autovacuum_is_off()
                rounds[scenario].append(run(scenario, args, port, token, external_id))
        pending = _pending_entries()  # how far the sealer is behind the writers at the end of the load
        cpu_used = {name: _group_cpu_seconds(p.pid) - cpu_before[name] for name, p in procs if p}
    finally:
        _stop_server(server)
        if sealer is not None:
            _stop_server(sealer)
    # The round with the median throughput stands for the scenario; the range shows the spread.
    rows = [
        (name, sorted(results, key=lambda r: r["rps"])[len(results) // 2]) for name, results in rounds.items()
    ]

    print(
        f"\nAPI throughput — gunicorn {args.workers}×{args.server_threads} threads on {HOST}, "
        f"load {args.loadgen}: {args.procs * args.threads} connections, "
        f"≤{args.duration:g} s / ≤{args.max_requests} req each, median of {args.rounds} interleaved rounds"
    )
    print(
        f"{'scenario':<14}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'SQL/req':>9}"
        f"{'CPU ms':>8}  req/s of each round"
    )
    for name, r in rows:
        each = " / ".join(f"{x['rps']:.0f}" for x in rounds[name])
        print(
            f"{name:<14}{r['requests']:>10}{r['errors']:>8}{r['rps']:>10.0f}{r['p50']:>9.1f}{r['p95']:>9.1f}"
            f"{statements[name]:>9}{cpu[name]:>8.2f}  {each}"
        )
    print(f"CPU ms: one request in this process (test client, {CPU_SAMPLE} each), the machine's speed meter")
    sealed_by = "the audit_sealer process" if sealer is not None else "the web processes"
    print(f"audit entries sealed by {sealed_by}; still pending right after the last round: {pending}")
    print("CPU seconds used during the rounds: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu_used.items()))
    print(f"machine now: one SELECT 1 round trip to PostgreSQL = {round_trip:.2f} ms, load average {_load()}")
    for name, what in (("consent", "audited, no key"), ("consent+idem", "audited, with an Idempotency-Key")):
        if name in dict(rows):
            rps = dict(rows)[name]["rps"]
            verdict = "met" if rps >= TARGET_RPS else "NOT met"
            print(f"target ≥ {TARGET_RPS} consent writes/s ({what}): {rps:.0f}/s — {verdict}")


if __name__ == "__main__":
    main()
