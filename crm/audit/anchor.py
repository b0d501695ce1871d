"""The chain's head, anchored outside the database.

The signed head row (crm.AuditChainHead) shows the newest entries deleted, but not the whole trail wiped (an
empty table and no head verify as an empty trail) nor an old copy of the database put back. So the sealer
writes every new head, after its transaction commits, as one JSON line {"seq", "hash", "time", "db", "mac"} to
settings.AUDIT_ANCHOR_PATH (opened O_APPEND: lines are only ever added) and to the "crm.audit.anchor" logger,
which operators ship off the host. `audit_verify` then checks that the chain still holds every head anchored
in the file's last lines (crm.audit.verification): a wiped or rolled-back trail fails.

A trail wiped and written anew would soon pass its old head's number with other hashes. So a sealer appends a
head only while the chain still holds the highest head already anchored (crm.audit.sealing): once the chain
has diverged, the file keeps its last good head and every verification fails until an operator deals with it
(moves the file aside as evidence, after a documented restore for instance).

Lines name the database (its name in settings) and readers take only that database's: a bench or scratch
database sealed with the same settings file does not raise the anchor of the real one.
Sealers running side by side may append their heads out of order, so readers take the highest sequence
number among the last lines, not simply the last line. Lines whose signature (AUDIT_CHAIN_KEY) is wrong are
ignored: without the key nobody can raise the anchor to make a genuine trail fail.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from crm.audit import signing

logger = logging.getLogger("crm.audit.anchor")

# The highest head is among the last lines: reading only the end keeps verification constant in cost.
TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class Anchor:
    """A head of the chain recorded outside the database."""

    seq: int
    hash: str
    time: str


def anchor_path() -> Path | None:
    """The configured anchor file, or None when anchoring is off (tests that do not ask for it)."""
    value = getattr(settings, "AUDIT_ANCHOR_PATH", "")
    return Path(value) if value else None


def _database(using: str = "default") -> str:
    return str(settings.DATABASES[using]["NAME"])


def anchor_write(seq: int, chain_hash: str, path: Path | None = None, using: str = "default") -> None:
    """Append the head (seq, chain_hash) to the anchor file and log it. Call only after the seal committed."""
    line = json.dumps(
        {
            "seq": seq,
            "hash": chain_hash,
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "db": _database(using),
            "mac": signing.head_mac(seq, chain_hash),
        },
        separators=(",", ":"),
    )
    logger.info(line)
    path = path or anchor_path()
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write of one line with O_APPEND: concurrent sealers never interleave within a line.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def anchor_heads(
    path: Path | None = None, using: str = "default", tail_bytes: int = TAIL_BYTES
) -> list[Anchor]:
    """Every correctly signed head of this database among the last `tail_bytes` of the anchor file."""
    path = path or anchor_path()
    if path is None or not path.exists():
        return []
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - tail_bytes))
        tail = f.read()
    lines = tail.split(b"\n")
    if size > tail_bytes:
        lines = lines[1:]  # the first one is cut
    database = _database(using)
    return [anchor for raw in lines if (anchor := _parse(raw, database)) is not None]


def anchor_read(
    path: Path | None = None, using: str = "default", tail_bytes: int = TAIL_BYTES
) -> Anchor | None:
    """The highest head of this database among the last lines of the anchor file; None when there is none."""
    return max(anchor_heads(path, using, tail_bytes), key=lambda anchor: anchor.seq, default=None)


def _parse(raw: bytes, database: str) -> Anchor | None:
    try:
        data = json.loads(raw)
        seq, chain_hash, mac = int(data["seq"]), str(data["hash"]), str(data["mac"])
    except (ValueError, KeyError, TypeError):
        return None
    if data.get("db") != database:
        return None
    if not hmac.compare_digest(mac, signing.head_mac(seq, chain_hash)):
        logger.warning("anchor line with a wrong signature ignored (seq %s)", seq)
        return None
    return Anchor(seq, chain_hash, str(data.get("time", "")))
