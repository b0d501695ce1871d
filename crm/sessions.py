"""Session engine: Django's database sessions, read by one constant statement (crm.rawsql).

Every admin request reads its session row; Django builds that ORM query anew each time. Same row, same
expiry rule, same behaviour when missing (the session key is dropped); writes are Django's own.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.sessions.backends.db import SessionStore as DbSessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from crm import rawsql


@functools.cache
def _session_sql() -> str:
    return (
        f'SELECT {rawsql.columns(Session, "s")} FROM "{Session._meta.db_table}" s'  # noqa: S608
        " WHERE s.session_key = %s AND s.expire_date > %s"
    )


class SessionStore(DbSessionStore):
    def _get_session_from_db(self) -> Any:
        row = rawsql.fetch_one(_session_sql(), [self.session_key, timezone.now()])
        if row is None:
            self._session_key = None
            return None
        return rawsql.load(Session, row)
