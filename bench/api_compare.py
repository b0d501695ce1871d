"""The consent-write API before and after a change, in one run: api_bench.py of each checkout, alternated.

    DATABASE_URL=postgres://root@127.0.0.1:5432/crm_api python bench/api_compare.py ../before [--rounds 3]

Each round runs the earlier checkout's own bench/api_bench.py (one round of its scenarios), then this
checkout's, each on its own throwaway database on the same server (`<name>_before`, `<name>_after`, created
when missing and kept between rounds so that only the first round migrates): the same machine minute falls on
both. The median of each side's rounds is printed with the ratio after/before of the consent writes' requests
per second and of their CPU time per request (api_bench's speed meter), the figure issue #12 asks for ("a
loss over 20 % needs a measured reason"). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("requests", "errors", "rps", "p50", "p95", "sql", "cpu")


def database_url(base: str, suffix: str) -> str:
    parts = urlsplit(base)
    name = f"{parts.path.lstrip('/')}_{suffix}"
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlunsplit(parts._replace(path=f"/{name}"))


def active_ms(url: str) -> float:
    """PostgreSQL's time spent executing statements in the database of `url` (pg_stat_database.active_time,
    milliseconds, every backend that ever ran there); a side's database is its own, so the difference over a
    round is that side's database time."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        row = conn.execute("SELECT active_time FROM pg_stat_database WHERE datname = %s", [name]).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


# A line of the server log written by log_min_duration_statement: its database, its duration, the phase of the
# extended protocol (parse / bind / execute) or a simple-protocol statement, and the statement's first line.
LOG_LINE = re.compile(
    r"\[(?P<pid>\d+)\] \S*@(?P<db>\S+) LOG:  duration: (?P<ms>[0-9.]+) ms  "
    r"(?:(?P<phase>parse|bind|execute) [^:]*|statement): (?P<sql>.*)"
)


def statement_kind(text: str) -> str:
    """A statement's shape: its first 100 characters, numbers and quoted values replaced."""
    text = re.sub(r"'[^']*'", "'…'", text)
    return re.sub(r"\b\d+\b", "N", text)[:100]


def statement_times(url: str, server_log: Path, checkout: Path, args: argparse.Namespace) -> None:
    """One more round of `checkout`'s consent scenario with every statement's duration logged by the server
    (ALTER DATABASE … SET log_min_duration_statement = 0, parameters not logged), then each statement kind's
    time per consent write, from the log lines of the side's own database: which statement the time went to.
    The logging itself costs server time alike on both sides; the figures are for comparing, not absolute."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    database = sql.Identifier(name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET log_min_duration_statement = 0").format(database))
        conn.execute(sql.SQL("ALTER DATABASE {} SET log_parameter_max_length = 0").format(database))
    offset = server_log.stat().st_size
    try:
        rows = one_round(checkout, url, argparse.Namespace(**{**vars(args), "scenarios": "consent"}))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for setting in ("log_min_duration_statement", "log_parameter_max_length"):
                conn.execute(sql.SQL("ALTER DATABASE {} RESET {}").format(database, sql.Identifier(setting)))
    with server_log.open("rb") as log:
        log.seek(offset)
        lines = log.read().decode("utf-8", "replace").splitlines()
    writes = rows["consent"]["requests"]
    matches = [m for m in map(LOG_LINE.search, lines) if m and m["db"] == name]
    # The web server's connections are those that wrote ledger rows; the others are the bench's set-up (users,
    # customers, permissions) and the audit sealer, shown apart: only the first are the requests' own.
    web = {m["pid"] for m in matches if 'INSERT INTO "consent_consentevent"' in m["sql"]}
    for title, group in (
        ("the web server's connections", [m for m in matches if m["pid"] in web]),
        ("other connections (set-up, sealer)", [m for m in matches if m["pid"] not in web]),
    ):
        totals: dict[str, list[float]] = {}
        for match in group:
            entry = totals.setdefault(statement_kind(match["sql"]), [0.0, 0.0])
            entry[0] += float(match["ms"])
            entry[1] += 1 if match["phase"] in (None, "execute") else 0
        print(f"  {checkout.name}, {title}: {writes:.0f} consent writes; per write, heaviest first")
        shown = sorted(totals.items(), key=lambda kv: -kv[1][0])
        for kind, (ms, runs) in shown[: args.statements_shown]:
            print(f"    {ms / writes:7.3f} ms  {runs / writes:5.2f}×  {kind}")
        print(f"    {sum(v[0] for v in totals.values()) / writes:7.3f} ms in all", flush=True)


def one_round(checkout: Path, url: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """One round of `checkout`'s api_bench, its table parsed: scenario -> the columns above."""
    command = [sys.executable, str(checkout / "bench" / "api_bench.py"), "--rounds", "1"]
    command += ["--scenarios", args.scenarios, "--duration", str(args.duration)]
    env = {**os.environ, "DATABASE_URL": url}
    began = active_ms(url)
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, check=False)
    database = active_ms(url) - began
    if done.returncode != 0:
        raise SystemExit(f"the bench of {checkout} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    rows: dict[str, dict[str, float]] = {}
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("scenario"))
    for line in lines[start + 1 :]:
        cells = line.split()
        if len(cells) < 8 or cells[0] not in args.scenarios.split(","):
            break
        rows[cells[0]] = dict(zip(COLUMNS, map(float, cells[1:8]), strict=True))
    print(
        f"  {checkout.name:<24} "
        + "  ".join(f"{k} {v['rps']:.0f}/s {v['cpu']:.2f} ms" for k, v in rows.items())
    )
    # The database's share, per request of the round (set-up and warm-up included, alike on both sides): with
    # the same statements per request, a difference here is heavier statements (indexes, triggers, the gate).
    requests = sum(r["requests"] for r in rows.values())
    print(f"  {'':<24} PostgreSQL active ms per request of the round: {database / requests:.2f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path, help="a checkout of the code before the change")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--scenarios", default="health,consent,consent+idem")
    parser.add_argument(
        "--statement-log",
        type=Path,
        help="the server's log file (e.g. /var/log/postgresql/postgresql-15-main.log): after the rounds, one "
        "more consent round per side with every statement's duration logged, summed per statement kind",
    )
    parser.add_argument("--statements-shown", type=int, default=12)
    args = parser.parse_args()
    base = os.environ["DATABASE_URL"]
    sides = {
        "before": (args.before.resolve(), database_url(base, "before")),
        "after": (ROOT, database_url(base, "after")),
    }
    results: dict[str, list[dict[str, dict[str, float]]]] = {side: [] for side in sides}
    for n in range(args.rounds):
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"round {n + 1} of {args.rounds}, load average {load}", flush=True)
        for side, (checkout, url) in sides.items():
            results[side].append(one_round(checkout, url, args))
    print(f"\nmedian of {args.rounds} alternated rounds (requests/s; CPU ms of one request in one process)")
    print(
        f"{'scenario':<14}{'before req/s':>14}{'after req/s':>13}{'ratio':>8}"
        f"{'before CPU':>12}{'after CPU':>11}{'ratio':>8}"
    )
    for scenario in args.scenarios.split(","):
        med = {
            side: {c: statistics.median(r[scenario][c] for r in results[side]) for c in ("rps", "cpu")}
            for side in sides
        }
        b, a = med["before"], med["after"]
        print(
            f"{scenario:<14}{b['rps']:>14.0f}{a['rps']:>13.0f}{a['rps'] / b['rps']:>7.2f}×"
            f"{b['cpu']:>12.2f}{a['cpu']:>11.2f}{a['cpu'] / b['cpu']:>7.2f}×"
        )
    if args.statement_log:
        print(
            "\nwhere the database time of a consent write goes (server log, log_min_duration_statement = 0)"
        )
        for checkout, url in sides.values():
            statement_times(url, args.statement_log, checkout, args)
    print(
        f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cpus"
    )


if __name__ == "__main__":
    main()
