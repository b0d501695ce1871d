"""The test run's services as URLs, for the processes and second connections that tests start.

A subprocess (a real Celery worker, `python -c "import config.wsgi"`) or a second psycopg connection must
reach the same PostgreSQL and Redis as the test process. On the embedded default `./dev test` starts, the
database is reached through a unix socket named in the connection OPTIONS, not at 127.0.0.1:5432, so a DSN
built from HOST/PORT alone reached another server (pitfalls: subprocesses and second connections). These
read the parameters psycopg itself is given.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from django.conf import settings
from django.db import connection
from psycopg.conninfo import make_conninfo

_LIBPQ_KEYS = ("dbname", "user", "password", "host", "port")


def _params() -> dict[str, str]:
    params = connection.get_connection_params()
    return {k: str(params[k]) for k in _LIBPQ_KEYS if params.get(k) not in (None, "")}


def database_conninfo() -> str:
    """libpq conninfo of the test database (for `psycopg.connect`)."""
    return make_conninfo(**_params())


def database_url() -> str:
    """The test database as a DATABASE_URL that django-environ reads back to the same parameters."""
    p = _params()
    auth = quote(p.get("user", ""), safe="")
    if "password" in p:
        auth += ":" + quote(p["password"], safe="")
    host = p.get("host", "")
    query = {}
    if host.startswith("/"):  # a socket directory: as pgserver writes it, in the query string
        query["host"], host = host, ""
    netloc = f"{auth}@{quote(host, safe='')}" + (f":{p['port']}" if "port" in p and host else "")
    if "port" in p and not host:
        query["port"] = p["port"]
    return f"postgres://{netloc}/{quote(p['dbname'], safe='')}" + (f"?{urlencode(query)}" if query else "")


def service_env(**overrides: str) -> dict[str, str]:
    """os.environ with the test run's database, broker and Redis: what a subprocess of a test needs."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
        "REDIS_URL": settings.REDIS_URL,
    }
    env.update(overrides)
    return env


def is_audit_id_reservation(sql: str) -> bool:
    """The statement that reserves a block of audit entry ids (crm.audit.identity): it runs once per block of
    entries a process writes, not per request, so query counts leave it out."""
    return "pg_get_serial_sequence('crm_auditentry'" in sql


def without_audit_id_reservation(captured: object) -> list[str]:
    """The SQL of a CaptureQueriesContext, without the audit id reservation."""
    return [q["sql"] for q in captured.captured_queries if not is_audit_id_reservation(q["sql"])]  # type: ignore[attr-defined]


def celery_worker_start(
    name: str, *, concurrency: int = 2, pool: str = "prefork", **env: str
) -> subprocess.Popen[bytes]:
    """A real Celery worker on this run's database and broker (service_env), in its own process group so
    that a kill reaches its pool children too (os.killpg(proc.pid, …))."""
    celery = str(Path(sys.executable).with_name("celery"))
    return subprocess.Popen(
        [
            celery,
            "-A",
            "config",
            "worker",
            "-c",
            str(concurrency),
            "-P",
            pool,
            "-l",
            "WARNING",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env=service_env(DJANGO_ENV="test", CONN_MAX_AGE="0", **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def worker_stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal a worker's whole process group (celery_worker_start: its pool children too) and reap it; a
    worker gone already is fine."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    proc.wait(30)


def wait_until(what: str, cond: Callable[[], bool], timeout: float = 120) -> None:
    """Poll another process's progress (a worker's, a second connection's) until `cond` holds; fail naming
    `what` after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def waiting_sessions_end(*, wait_event_type: str | None = None, wait_event: str | None = None) -> None:
    """End the sessions a killed worker left waiting (PostgreSQL notices a client gone only on its next
    write to the socket): this database's other client sessions waiting on that event (type)."""
    with psycopg.connect(database_conninfo(), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
            "AND wait_event_type = coalesce(%s, wait_event_type) AND wait_event = coalesce(%s, wait_event)",
            [wait_event_type, wait_event],
        )
