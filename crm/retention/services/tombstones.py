"""Tombstones (消去証跡): the proof of each erasure by a keyed hash of the customer id, and their export and
import beside the backups (re-application after a restore: crm.retention.services.restore)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from crm.models import Customer
from crm.retention import rules
from crm.retention.models import RetentionPolicy, RetentionRun, Tombstone
from crm.retention.services.clearing import column, table

if TYPE_CHECKING:
    import datetime as dt


def tombstone_key() -> bytes:
    """Key of the tombstone hashes: RETENTION_TOMBSTONE_KEY, else a sub-key derived from BLIND_INDEX_KEY.

    Derived with its own label so a tombstone hash never equals a blind index. Restoring a backup needs the
    same key: rotating BLIND_INDEX_KEY without setting RETENTION_TOMBSTONE_KEY to the old sub-key would stop
    re-application from recognising anybody.
    """
    own = getattr(settings, "RETENTION_TOMBSTONE_KEY", "")
    if own:
        return own.encode()
    return hmac.new(settings.BLIND_INDEX_KEY.encode(), b"retention-tombstone-v1", hashlib.sha256).digest()


def tombstones_write(
    ids: Iterable[int],
    *,
    scope: str,
    action: str,
    reason: str,
    policy: RetentionPolicy | None,
    run: RetentionRun | None,
    at: dt.datetime,
) -> None:
    """One tombstone per id for (scope, action), in the caller's transaction; an existing one is kept."""
    key = tombstone_key()
    hashes = [rules.subject_hash(key, cid) for cid in ids]
    c = {n: column(Tombstone, n) for n in ("subject_hash", "scope", "action", "policy", "run", "reason")}
    performed_at = column(Tombstone, "performed_at")
    # One set-based INSERT (no model instances: this runs for every erased customer); a subject already
    # proven for this scope and action (a re-delivered batch, a re-application) is left as it was.
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {table(Tombstone)} "  # noqa: S608
            f"({', '.join(c.values())}, {performed_at}) "
            "SELECT h, %s, %s, %s, %s, %s, %s FROM unnest(%s::text[]) AS h "
            f"ON CONFLICT ({c['subject_hash']}, {c['scope']}, {c['action']}) DO NOTHING",
            [scope, action, policy.pk if policy else None, run.pk if run else None, reason[:64], at, hashes],
        )


def tombstones_export(*, stream: Any) -> int:
    """Write every tombstone as one JSON line (kept apart from the database backups, for re-application)."""
    n = 0
    for t in (
        Tombstone.objects.order_by("pk")
        .values("subject_hash", "scope", "action", "policy_id", "reason", "performed_at")
        .iterator(chunk_size=5000)
    ):
        line = {**t, "performed_at": t["performed_at"].isoformat()}
        stream.write(json.dumps(line, ensure_ascii=False) + "\n")
        n += 1
    return n


def tombstones_import(*, lines: Iterable[str]) -> int:
    """Load exported tombstones (ignoring ones already present, and the legal-hold lines of the same file:
    legal_holds_import reads those)."""
    from django.utils.dateparse import parse_datetime

    known_policies = set(RetentionPolicy.objects.values_list("pk", flat=True))
    batch: list[Tombstone] = []
    n = 0
    for line in lines:
        if not line.strip():
            continue
        d = json.loads(line)
        if d.get("kind", "tombstone") != "tombstone":
            continue
        batch.append(
            Tombstone(
                subject_hash=d["subject_hash"],
                scope=d["scope"],
                action=d["action"],
                policy_id=d.get("policy_id") if d.get("policy_id") in known_policies else None,
                reason=d.get("reason", "")[:64],
                performed_at=parse_datetime(d["performed_at"]) or timezone.now(),
            )
        )
        if len(batch) >= 2000:
            n += len(Tombstone.objects.bulk_create(batch, ignore_conflicts=True))
            batch = []
    if batch:
        n += len(Tombstone.objects.bulk_create(batch, ignore_conflicts=True))
    return n


def customer_id_batches(size: int) -> Iterator[list[int]]:
    """Every customer id, in ascending batches of `size` (to hash them with the tombstone key: no list of
    erased ids is ever kept)."""
    last = 0
    while True:
        ids = list(Customer.objects.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            return
        yield ids
        last = ids[-1]
