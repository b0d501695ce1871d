"""An audit entry's id is taken from the table's sequence before the entry is written, so its MAC covers it.

Ids are reserved a few at a time per process (one `nextval` round trip per ID_BLOCK entries, not one per
entry: the integration API writes an entry on every call). An id reserved and never used leaves a gap in the
ids, which mean nothing; the chain's own numbers (chain_seq) stay gapless. Thread-safe, and a forked child
never reuses its parent's block.
"""

from __future__ import annotations

import os
import threading

from django.db import connections

ID_BLOCK = 16

_lock = threading.Lock()
_blocks: dict[tuple[int, str], list[int]] = {}


def entry_id_reserve(using: str = "default") -> int:
    """A fresh id for an audit entry about to be written on the database `using`."""
    key = (os.getpid(), using)
    with _lock:
        block = _blocks.get(key)
        if not block:
            with connections[using].cursor() as cur:
                cur.execute(
                    "SELECT nextval(pg_get_serial_sequence('crm_auditentry', 'id'))"
                    " FROM generate_series(1, %s)",
                    [ID_BLOCK],
                )
                block = sorted((row[0] for row in cur.fetchall()), reverse=True)
            if any(pid != key[0] for pid, _using in _blocks):
                _blocks.clear()  # inherited from the parent process: its ids are its own
            _blocks[key] = block
        return block.pop()


def entry_ids_forget() -> None:
    """Drop the reserved ids (tests that recreate the table's sequence)."""
    with _lock:
        _blocks.clear()
