"""Sealing: giving each pending audit entry its place in the chain (chain_seq, chain_hash).

Writers insert their entries signed (entry_mac) and never wait for the chain. One dedicated process seals
them: `manage.py audit_sealer` (run beside beat; `./dev up` starts it) loops over audit_sealer_run(), as
healthchecks runs `manage.py sendalerts`. Beat's per-minute task (crm.tasks.audit_seal) is the safety net
when that process is down. settings.AUDIT_SEAL_ON_COMMIT also seals right after each commit in the writing
process (the tests' mode). Every sealer is safe beside the others: the chain's advisory lock serialises them,
and the UPDATE only touches rows still pending (when another process got there first it changes nothing).
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import cast

from django.conf import settings
from django.db import close_old_connections, connection, transaction

from crm.audit.anchor import Anchor, anchor_read, anchor_write
from crm.models import AUDIT_CHAIN_LOCK, GENESIS_HASH, AuditChainHead, AuditEntry

logger = logging.getLogger(__name__)

SEAL_BATCH_SIZE = 500


class ChainBusy(Exception):
    """Another process holds the chain lock (raised by audit_seal_pending(wait=False))."""


class SealConflict(Exception):
    """Rows chosen for the seal were sealed meanwhile without the chain lock; nothing is changed."""


def audit_seal_pending(
    *, batch_size: int = SEAL_BATCH_SIZE, using: str = "default", wait: bool = True
) -> int:
    """Chain every pending entry whose entry_mac is valid; return how many were sealed.

    `wait=False` never waits for the chain lock: when another process holds it, ChainBusy is raised and
    nothing is done (that process is sealing: it got there first).

    Holds the chain's advisory lock only for the seal itself (a few milliseconds per batch), never for a
    business transaction. A pending entry whose entry_mac does not match (inserted around the model, or a
    copy of a genuine row under another id) is left unsealed, and the verifier reports it. Each new head is
    anchored outside the database once its transaction commits (crm.audit.anchor).
    """
    sealed, after = 0, 0
    while True:
        with transaction.atomic(using=using):
            with connection.cursor() as cur:
                # A seal lost in a crash is redone by the next one (its entries are still pending), so it
                # need not wait for its own WAL flush.
                cur.execute("SET LOCAL synchronous_commit = off")
                if wait:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", [AUDIT_CHAIN_LOCK])
                else:
                    cur.execute("SELECT pg_try_advisory_xact_lock(%s)", [AUDIT_CHAIN_LOCK])
                    if not cur.fetchone()[0]:
                        raise ChainBusy
            queue = AuditEntry.objects.using(using).filter(chain_seq=None, pk__gt=after)
            pending = list(queue.order_by("pk")[:batch_size])
            if not pending:
                return sealed
            after = pending[-1].pk
            seq, previous = _current_head(using)
            rows = []
            for entry in pending:
                if not entry.entry_mac_valid():
                    continue
                seq += 1
                entry.chain_seq = seq
                previous = entry.compute_chain_hash(previous)
                rows.append((seq, previous, entry.pk))
            if rows:
                seqs, hashes, ids = (list(column) for column in zip(*rows, strict=True))
                with connection.cursor() as cur:
                    # One statement for the batch, conditional on the rows still being pending. The guard of
                    # migration 0009 lets exactly this through, row by row: NULL chain fields set once.
                    cur.execute(
                        "UPDATE crm_auditentry e SET chain_seq = s.seq, chain_hash = s.hash"
                        " FROM unnest(%s::bigint[], %s::varchar[], %s::bigint[]) AS s(seq, hash, id)"
                        " WHERE e.id = s.id AND e.chain_seq IS NULL",
                        [seqs, hashes, ids],
                    )
                    if cur.rowcount != len(rows):
                        # Only possible for a writer bypassing the lock: roll back rather than chain a gap.
                        raise SealConflict(
                            f"{len(rows) - cur.rowcount} of {len(rows)} rows were sealed meanwhile"
                        )
                AuditChainHead.advance(seq=seq, chain_hash=previous)
                transaction.on_commit(functools.partial(_anchor_quietly, seq, previous), using=using)
                sealed += len(rows)
        if len(pending) < batch_size:
            return sealed


def _current_head(using: str) -> tuple[int, str]:
    head = AuditChainHead.objects.using(using).filter(pk=AuditChainHead.SINGLETON).first()
    if head is not None:
        return head.seq, head.hash
    last = (
        AuditEntry.objects.using(using)
        .exclude(chain_seq=None)
        .order_by("-chain_seq")
        .values_list("chain_seq", "chain_hash")
        .first()
    )
    # exclude(chain_seq=None): the seq of the row read is never None
    return cast(tuple[int, str], last) if last else (0, GENESIS_HASH)


# The sealer's look at the anchor before each append: the last few dozen lines hold the highest head.
GUARD_TAIL_BYTES = 8 * 1024


def _chain_holds(anchor: Anchor, using: str = "default") -> bool:
    return AuditEntry.objects.using(using).filter(chain_seq=anchor.seq, chain_hash=anchor.hash).exists()


def _anchor_quietly(seq: int, chain_hash: str) -> None:
    """Append a committed head, unless the chain no longer holds the highest head anchored: then the file
    keeps its last good head (a wiped or rolled-back trail must not be anchored over)."""
    try:
        anchored = anchor_read(tail_bytes=GUARD_TAIL_BYTES)
        if anchored is not None and not _chain_holds(anchored):
            logger.error(
                "audit head %s not anchored: the chain no longer holds the anchored head %s (wiped or rolled "
                "back?); run manage.py audit_verify",
                seq,
                anchored.seq,
            )
            return
        anchor_write(seq, chain_hash)
    except Exception:  # an unwritable file, a lost connection: runs after commit, and must not undo it
        # The seal is committed; the next one anchors a later head, and audit_verify checks against that.
        logger.exception("could not append the audit head %s to the anchor file", seq)


def anchor_catch_up(using: str = "default") -> None:
    """Anchor the database's head when the anchor file is behind it (first start, or after a head was
    sealed by a process that could not write the file). A chain that no longer holds the anchored head (behind
    it, or diverged from it) is never anchored over: that is a wiped or rolled-back trail, for `audit_verify`
    to report."""
    head = AuditChainHead.objects.using(using).filter(pk=AuditChainHead.SINGLETON).first()
    if head is None or not head.signature_valid():
        return
    anchored = anchor_read()
    if anchored is not None and not _chain_holds(anchored, using):
        logger.error(
            "the audit chain (head %s) no longer holds the anchored head %s: run manage.py audit_verify",
            head.seq,
            anchored.seq,
        )
    elif anchored is None or anchored.seq < head.seq:
        anchor_write(head.seq, head.hash)


# --- after commit (settings.AUDIT_SEAL_ON_COMMIT) ---------------------------------------------------------


def _seal_after_commit() -> None:
    try:
        audit_seal_pending()
    except Exception:  # never fail a committed write over its seal: the sealer process or beat chains it
        logger.exception("audit seal after commit failed; entries stay pending until the sealer runs")


def audit_seal_after_commit(*, using: str = "default") -> None:
    """With settings.AUDIT_SEAL_ON_COMMIT, seal once the writer's transaction commits (once per transaction);
    otherwise nothing: the sealer process chains the entry within AUDIT_SEAL_INTERVAL seconds."""
    if not settings.AUDIT_SEAL_ON_COMMIT:
        return
    conn = transaction.get_connection(using)
    if any(callback is _seal_after_commit for _sids, callback, _robust in conn.run_on_commit):
        return
    transaction.on_commit(_seal_after_commit, using=using)


def audit_seal_after_save(sender: object, instance: AuditEntry, created: bool, **kwargs: object) -> None:
    """post_save of AuditEntry (connected in crm.apps): a saved entry is sealed after commit, as above."""
    if created:
        audit_seal_after_commit(using=instance._state.db or "default")


# --- the sealer process ----------------------------------------------------------------------------------


def audit_sealer_run(
    *, stop: threading.Event, interval: float, sealed: threading.Event | None = None
) -> None:
    """Seal pending entries until `stop` is set (the loop of `manage.py audit_sealer`).

    A round that found work goes round again at once; an idle round, or one where another process holds the
    chain lock (it got there first), waits `interval` seconds or until `stop`. Errors are logged and the
    loop goes on: a broken connection is replaced on the next round. `sealed` is set after every round that
    sealed something (tests wait on it instead of sleeping).
    """
    anchor_catch_up()
    while not stop.is_set():
        count = 0
        try:
            close_old_connections()  # drop a broken or CONN_MAX_AGE-expired connection between rounds
            if AuditEntry.objects.filter(chain_seq=None).exists():  # the partial index: cheap when idle
                count = audit_seal_pending(wait=False)
        except ChainBusy:
            pass  # another process is sealing: it got there first
        except Exception:
            logger.exception("audit seal failed; retrying in %s s", interval)
        if count:
            if sealed is not None:
                sealed.set()
            continue
        stop.wait(interval)
