"""PostgreSQL backend: Django's, with a health check that costs no round trip while the connection is fine.

With CONN_HEALTH_CHECKS, Django checks a persistent connection before its first query of every request by
running `SELECT 1` (DatabaseWrapper.is_usable): one round trip per request, the API's and the admin's. An
idle PostgreSQL connection receives nothing unless the server ends it (a restart, pg_terminate_backend, an
idle timeout): the server then sends its FATAL message and closes the socket. So the check polls the socket
first: nothing to read means nobody hung up, and the connection is used as is; anything to read (or a
connection psycopg already knows is closed or broken) gets Django's own `SELECT 1`, which fails on a dead
connection and makes Django open a new one.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper


class DatabaseWrapper(PostgresDatabaseWrapper):
    def is_usable(self) -> bool:
        conn = self.connection
        if conn is None or conn.closed or conn.broken:
            return False
        if self.in_atomic_block or conn.info.transaction_status != 0:  # not idle: Django's own check
            return super().is_usable()
        try:
            poller = select.poll()
            poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
            pending = poller.poll(0)
        except (OSError, ValueError):
            return False
        return super().is_usable() if pending else True
