"""The keyed hashes of the audit trail (AUDIT_CHAIN_KEY): an entry's own MAC, its link in the chain, the head.

Pure functions over payloads (crm.models.AuditEntry.chain_payload builds them), so what is signed is
written down in one place. Each hash has its own domain string, so none can stand in for another.

- entry MAC: signs the entry as written, its id included, before it has a place in the chain. An id is
  unique, so a copy of a genuine row (INSERT … SELECT, entry_mac and all) either keeps the id and is refused
  by the primary key, or gets a new id under which its MAC is wrong: the sealer never chains it and
  `audit_verify` names it. MACs of this version start with ENTRY_MAC_VERSION.
- chain hash: previous hash ‖ the entry with its sequence number (and its id, for entries whose MAC covers
  it), so a sealed row cannot be moved, edited or swapped without breaking every later link.
- head MAC: the newest (seq, hash), kept in crm.AuditChainHead and written to the anchor file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from django.conf import settings

# Entries signed before the MAC covered the id carry a bare hex MAC; they are only ever verified through the
# chain (all were sealed before the upgrade: crm migration 0014).
ENTRY_MAC_VERSION = "v2:"


def _key() -> bytes:
    return settings.AUDIT_CHAIN_KEY.encode()


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)


def entry_mac(payload: dict[str, Any]) -> str:
    """MAC of an entry as written: `payload` without a sequence number, with the entry's id."""
    if payload.get("id") is None:
        raise ValueError("an audit entry is signed with its id (take one first: crm.audit.identity)")
    body = _canonical(payload)
    return (
        ENTRY_MAC_VERSION
        + hmac.new(_key(), ("audit-entry-v2\x1e" + body).encode(), hashlib.sha256).hexdigest()
    )


def covers_id(mac: object) -> bool:
    """Whether an entry's MAC (and so its chain hash) covers its id (an unsigned entry's is not a string)."""
    return isinstance(mac, str) and mac.startswith(ENTRY_MAC_VERSION)


def chain_hash(previous: str, payload: dict[str, Any]) -> str:
    """The entry's link: HMAC over the previous link and the entry with its sequence number."""
    return hmac.new(_key(), (previous + "\x1e" + _canonical(payload)).encode(), hashlib.sha256).hexdigest()


def head_mac(seq: int, chain_hash_: str) -> str:
    """Signature of the newest link (the head row, the anchor file's lines)."""
    return hmac.new(_key(), f"audit-head\x1e{seq}\x1e{chain_hash_}".encode(), hashlib.sha256).hexdigest()
