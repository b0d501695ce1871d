"""The test run's services as URLs, for the processes and second connections that tests start.

A subprocess (a real Celery worker, `python -c "import config.wsgi"`) or a second psycopg connection must
reach the same PostgreSQL and Redis as the test process. On the embedded default `./dev test` starts, the
database is reached through a unix socket named in the connection OPTIONS, not at 127.0.0.1:5432, so a DSN
built from HOST/PORT alone reached another server (pitfalls: subprocesses and second connections). These
read the parameters psycopg itself is given.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlencode

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
