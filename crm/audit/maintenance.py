"""Lifting the database guard of the audit tables, for maintenance (pruning, repairs, tamper drills).

The guard triggers (crm migrations 0006, 0009, 0012, 0015) let UPDATE/DELETE/TRUNCATE through only when the
session sets the maintenance setting AND the current database role is a member of MAINTENANCE_ROLE, a
NOLOGIN role the application's own role is never granted (README: "Database roles"). So the application,
or anyone holding only its credentials, cannot lift the guard by setting a variable.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

MAINTENANCE_ROLE = "crm_maintenance"


@contextmanager
def audit_maintenance() -> Iterator[None]:
    """Allow UPDATE/DELETE on the audit tables for the enclosed statements of this transaction only.

    Works only for a connection whose role is a member of MAINTENANCE_ROLE (the tables' owner's
    administrators, not the application); anyone with those rights can also tamper, and the chain (with the
    anchored head) still shows what changed.
    """
    with transaction.atomic():
        _set_maintenance("on")
        yield
        # On an exception the atomic block rolls back, and the setting with it.
        _set_maintenance("off")


def _set_maintenance(value: str) -> None:
    with connection.cursor() as cur:
        # is_local=true: SET LOCAL, never outlives the transaction (nor a rolled-back savepoint).
        cur.execute("SELECT set_config('crm.audit_maintenance', %s, true)", [value])
