"""The audit trail: who is recorded as acting, how the hash chain is verified, how maintenance is allowed.

The entries themselves are written by django-auditlog (crm.models.AuditEntry chains them). This module holds
what surrounds them:

- `audit_actor(actor)`: attribute the entries written inside a block to a user (services, tasks, commands);
- `audit_seal_pending()`: chain the entries written since the last seal (after each commit, and from beat);
- `audit_chain_verify()`: walk the chain in sequence order and name the first broken link;
- `audit_maintenance()`: lift the database guard of migration 0006 for one transaction (pruning, repairs and
  the tests that simulate tampering).
"""

from __future__ import annotations

import atexit
import hmac
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auditlog.context import _set_extra_data, auditlog_disabled, auditlog_value, set_actor
from auditlog.diff import model_instance_diff
from auditlog.models import LogEntryManager
from auditlog.registry import auditlog as auditlog_registry
from auditlog.signals import post_log, pre_log
from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Model
from django.db.models.signals import pre_save

from crm.models import AUDIT_CHAIN_LOCK, GENESIS_HASH, AuditChainHead, AuditEntry

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

DEFAULT_BATCH_SIZE = 2000

# What a break means, shown by `audit_verify` and stored in ChainBreak.kind.
EDITED = "edited"  # the stored hash does not match the entry: the row was changed in the database
MISSING = "missing"  # a sequence number is absent: an entry was deleted
UNCHAINED = "unchained"  # a row the sealer refuses (no valid entry_mac): inserted bypassing the model
HEAD = "head"  # the signed head does not match the chain: newest entries removed or head forged/replayed
ANCHOR = "anchor"  # the chain does not contain a head recorded outside the database
KIND_LABELS = {
    EDITED: "記録後に変更された行",
    MISSING: "欠落（削除された行）",
    UNCHAINED: "チェーンを経ずに挿入された行",
    HEAD: "末尾の署名・連番の不一致",
    ANCHOR: "外部に記録した末尾と不一致",
}


# --- who acts ----------------------------------------------------------------------------------------


def _context_is_live(context: dict[str, Any]) -> bool:
    """Whether auditlog's receiver for this context is still connected.

    auditlog sets its context variable without ever resetting it, so after a request (or an earlier
    set_actor block) has ended the variable still names that actor while nothing fills it in any more.
    """
    duid = context.get("signal_duid")
    return duid is not None and any(key[0] == duid for key, *_rest in pre_save.receivers)


@contextmanager
def audit_actor(actor: AbstractBaseUser | None) -> Iterator[None]:
    """Attribute the audit entries written inside the block to `actor`.

    Inside a request the auditlog middleware already names the logged-in user and the address: that is
    kept. Otherwise (services called from tasks, commands, tests) `actor` is set for the block and the
    previous context is restored afterwards.
    """
    current = auditlog_value.get(None)
    live = bool(current) and _context_is_live(current)
    if actor is None or (live and current.get("actor")):
        yield
        return
    try:
        with set_actor(actor, remote_addr=current.get("remote_addr") if live else None):
            yield
    finally:
        if current is not None:
            # set_actor leaves its own (now disconnected) context behind; put the outer one back.
            auditlog_value.set(current)


# --- entries written beside their object -------------------------------------------------------------


class _UnsavedEntries(LogEntryManager):
    """auditlog's own log_create (content type, pk, repr, serialized data, correlation id), returning the
    entry instead of saving it."""

    def create(self, **kwargs: Any) -> AuditEntry:
        return AuditEntry(**kwargs)


_unsaved_entries = _UnsavedEntries()
_unsaved_entries.model = AuditEntry


@dataclass
class AuditDraft:
    """The signed, not yet inserted, audit entry of a create (audit_create_draft)."""

    entry: AuditEntry
    instance: Model
    changes: dict[str, Any]
    pre_log_results: list[tuple[Any, Any]]

    def written(self, using: str = "default") -> None:
        """Call once the entry's INSERT has run: what auditlog does after saving an entry."""
        self.entry._state.adding, self.entry._state.db = False, using
        audit_seal_after_commit(using=using)
        post_log.send(
            type(self.instance),
            instance=self.instance,
            instance_old=None,
            action=AuditEntry.Action.CREATE,
            error=None,
            pre_log_results=self.pre_log_results,
            changes=self.changes,
            log_entry=self.entry,
            log_created=True,
            use_json_for_changes=settings.AUDITLOG_STORE_JSON_CHANGES,
        )


def audit_create_draft(instance: Model) -> AuditDraft | None:
    """The entry auditlog's post_save receiver would write for creating `instance`, signed, not inserted.

    For a row written by hand in one statement with its audit entry (crm.rawsql.insert_together): the same
    steps as auditlog.receivers.log_create (disabled context, pre_log, the registry's masked diff, log_create)
    and as the pre_save receiver of the live auditlog context (actor, address), then AuditEntry.sign().
    None when auditlog would write nothing. `instance` must carry its primary key already.
    """
    sender = type(instance)
    if auditlog_disabled.get() or not auditlog_registry.contains(sender):
        return None
    pre_log_results = pre_log.send(sender, instance=instance, action=AuditEntry.Action.CREATE)
    if any(result is False for _receiver, result in pre_log_results):
        return None
    changes = model_instance_diff(None, instance, use_json_for_changes=settings.AUDITLOG_STORE_JSON_CHANGES)
    if not changes:
        return None
    entry = _unsaved_entries.log_create(instance, action=AuditEntry.Action.CREATE, changes=changes)
    context = auditlog_value.get(None)
    if context and _context_is_live(context):
        _set_extra_data(sender=AuditEntry, instance=entry, signal_duid=context["signal_duid"])
    entry.sign()
    return AuditDraft(entry, instance, changes, pre_log_results)


# --- maintenance -------------------------------------------------------------------------------------


@contextmanager
def audit_maintenance() -> Iterator[None]:
    """Allow UPDATE/DELETE on the audit tables for the enclosed statements of this transaction only.

    Anyone with the database rights to run this can also tamper; the chain still shows what changed.
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


# --- verification ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainBreak:
    """The first place where the stored trail differs from what was written."""

    kind: str
    seq: int | None
    entry_id: int | None
    detail: str


@dataclass(frozen=True)
class ChainReport:
    """Outcome of one verification: how many entries were checked and the head they lead to."""

    checked: int
    last_seq: int
    last_hash: str
    problem: ChainBreak | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


# --- sealing -----------------------------------------------------------------------------------------

SEAL_BATCH_SIZE = 500


class ChainBusy(Exception):
    """Another process holds the chain lock (raised by audit_seal_pending(wait=False))."""


def audit_seal_pending(
    *, batch_size: int = SEAL_BATCH_SIZE, using: str = "default", wait: bool = True
) -> int:
    """Chain every pending entry whose entry_mac is valid; return how many were sealed.

    `wait=False` (the after-commit seal of a request) never waits for the chain lock: when another process
    holds it, ChainBusy is raised and nothing is done.

    Holds the chain's advisory lock only for the seal itself (a few milliseconds per batch), never for a
    business transaction: writers insert without the lock and whoever seals next chains their entries in id
    order. Safe to run twice or concurrently (the lock serialises sealers; a sealed entry is never pending
    again). A pending entry whose entry_mac does not match was not written through the model with the key:
    it is left unsealed, and the verifier reports it.
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
            head = AuditChainHead.objects.using(using).filter(pk=AuditChainHead.SINGLETON).first()
            last = (
                (head.seq, head.hash)
                if head
                else (
                    AuditEntry.objects.using(using)
                    .exclude(chain_seq=None)
                    .order_by("-chain_seq")
                    .values_list("chain_seq", "chain_hash")
                    .first()
                )
            )
            seq, previous = last if last else (0, GENESIS_HASH)
            rows = []
            for entry in pending:
                if not hmac.compare_digest(entry.entry_mac or "", entry.compute_entry_mac()):
                    continue
                seq += 1
                entry.chain_seq = seq
                previous = entry.compute_chain_hash(previous)
                rows.append((seq, previous, entry.pk))
            if rows:
                seqs, hashes, ids = (list(column) for column in zip(*rows, strict=True))
                with connection.cursor() as cur:
                    # One statement for the batch. The guard of migration 0009 lets exactly this through,
                    # row by row: NULL chain fields set once.
                    cur.execute(
                        "UPDATE crm_auditentry e SET chain_seq = s.seq, chain_hash = s.hash"
                        " FROM unnest(%s::bigint[], %s::varchar[], %s::bigint[]) AS s(seq, hash, id)"
                        " WHERE e.id = s.id AND e.chain_seq IS NULL",
                        [seqs, hashes, ids],
                    )
                AuditChainHead.advance(seq=seq, chain_hash=previous)
                sealed += len(rows)
        if len(pending) < batch_size:
            return sealed


def _seal_quietly(*, wait: bool = True) -> bool:
    """Seal, never raising; False when the chain was busy (wait=False) and nothing was sealed."""
    import logging

    try:
        audit_seal_pending(wait=wait)
    except ChainBusy:
        return False
    except Exception:  # the next seal (or beat) chains them; never fail a committed request over it
        logging.getLogger(__name__).exception("audit seal failed; entries stay pending until the next seal")
    return True


class _CoalescingSealer:
    """Seal after commit, at most once per `interval` seconds per process, never later than that.

    Every seal takes the chain's lock and runs about six statements. Run after every commit it was most of
    the cost of an API write and put every writer of the system in one queue behind that lock. Here the
    first commit after a quiet spell seals at once (inline, but never waiting for the chain lock: when
    another process holds it, the sealer thread seals instead); commits arriving within the interval only
    ask for a seal, and one thread of the process seals all of them when the interval is over (a batch of
    entries in one transaction). An entry therefore waits at most `interval` seconds plus one seal for its
    chain number; if the process dies in between, beat's per-minute seal chains it.
    `interval` 0 (settings.AUDIT_SEAL_COALESCE_SECONDS) seals inline after every commit.

    The thread stays while seals keep coming, with its own database connection: a thread (and a new
    connection, a new PostgreSQL backend) per seal cost several milliseconds of CPU twice a second per
    process under load. After `idle_close` seconds without a seal it closes the connection and ends; the
    next request for a seal starts another.
    """

    idle_close = 30.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._last = -1e9
        self._due: float | None = None  # monotonic time of the next deferred seal, if one is asked for
        self._thread: threading.Thread | None = None
        self._closing = False
        self._exit_hook = False

    def request(self) -> None:
        interval = float(getattr(settings, "AUDIT_SEAL_COALESCE_SECONDS", 0.0))
        now = time.monotonic()
        if interval <= 0:
            _seal_quietly()
            return
        with self._lock:
            inline = self._due is None and now - self._last >= interval
            if inline:
                self._last = now
            else:
                self._schedule(max(0.0, self._last + interval - now))
        # Inline, a request never waits for the chain lock: if another process is sealing (it may have read
        # the queue before this commit), the thread seals a moment later instead.
        if inline and not _seal_quietly(wait=False):
            with self._lock:
                self._schedule(interval)

    def _schedule(self, delay: float) -> None:
        """Ask the thread for a seal in `delay` seconds unless one is asked for (caller holds self._lock)."""
        if self._due is not None:
            return
        self._due = time.monotonic() + delay
        self._closing = False
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="audit-sealer", daemon=True)
            self._thread.start()
        self._wake.notify()
        if not self._exit_hook:
            # A command or task process that ends within the interval seals on its way out.
            atexit.register(self.flush)
            self._exit_hook = True

    def _next(self) -> bool:
        """Wait until a seal is due (True), or until the thread should end (False). Holds self._lock."""
        while True:
            if self._closing:
                return False
            if self._due is None:
                if not self._wake.wait(timeout=self.idle_close) and self._due is None:
                    return False  # idle: end, and give the connection back
                continue
            delay = self._due - time.monotonic()
            if delay <= 0:
                self._due = None
                self._last = time.monotonic()
                return True
            self._wake.wait(timeout=delay)

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if not self._next():
                        if self._thread is threading.current_thread():
                            self._thread = None
                        return
                # The thread's own connection, kept between seals: drop it when broken or past CONN_MAX_AGE.
                connection.close_if_unusable_or_obsolete()
                _seal_quietly()
        finally:
            connections.close_all()  # this thread's own connection, never a request's

    def flush(self) -> None:
        """Seal now what the thread would have sealed (process exit)."""
        with self._lock:
            pending, self._due = self._due is not None, None
        if pending:
            _seal_quietly()

    def close(self, timeout: float = 5.0) -> None:
        """Seal what is pending, end the thread and close its connection (tests; process shutdown)."""
        self.flush()
        with self._lock:
            self._closing = True
            thread = self._thread
            self._wake.notify_all()
        if thread is not None:
            thread.join(timeout)


_sealer = _CoalescingSealer()


def _seal_after_commit() -> None:
    _sealer.request()


def audit_seal_after_commit(*, using: str = "default") -> None:
    """Seal once the writer's transaction commits (at once in autocommit); once per transaction."""
    conn = transaction.get_connection(using)
    if any(callback is _seal_after_commit for _sids, callback, _robust in conn.run_on_commit):
        return
    transaction.on_commit(_seal_after_commit, using=using)


def audit_chain_verify(
    *, batch_size: int = DEFAULT_BATCH_SIZE, expect_head: tuple[int, str] | None = None
) -> ChainReport:
    """Recompute the audit chain from the first entry and report the first break.

    Entries are read in batches of consecutive numbers (`last < chain_seq <= last + batch_size`, a keyset
    on the unique index), so memory and the cost of each query stay constant whatever the size of the
    trail. The walk stops at the signed head read at the start: entries written
    while it runs belong to the next verification. `expect_head` is a (seq, hash) recorded earlier outside
    the database; the chain must still contain it.
    """
    # Entries written just now may not be chained yet: seal first, so only forged rows stay pending.
    audit_seal_pending()
    head = AuditChainHead.objects.filter(pk=AuditChainHead.SINGLETON).first()
    if head is not None and not head.signature_valid():
        return ChainReport(0, 0, GENESIS_HASH, ChainBreak(HEAD, head.seq, None, "head signature invalid"))

    previous, expected, checked = GENESIS_HASH, 1, 0
    entries = AuditEntry.objects.exclude(chain_seq=None).order_by("chain_seq")
    if head is not None:
        entries = entries.filter(chain_seq__lte=head.seq)
    while True:
        # A closed range of at most batch_size numbers rather than "> last LIMIT n": whatever plan the
        # database picks (no statistics yet, say) it reads one batch, never the rest of the table.
        batch = list(entries.filter(chain_seq__gte=expected, chain_seq__lt=expected + batch_size))
        for entry in batch:
            if entry.chain_seq != expected:
                return ChainReport(checked, expected - 1, previous, _gap(expected, entry))
            if not hmac.compare_digest(entry.compute_chain_hash(previous), entry.chain_hash):
                problem = ChainBreak(EDITED, entry.chain_seq, entry.pk, "hash mismatch")
                return ChainReport(checked, expected - 1, previous, problem)
            previous, expected, checked = entry.chain_hash, expected + 1, checked + 1
        if len(batch) < batch_size:
            break
    # A short batch ends the walk; an entry further on means the numbers in between were deleted.
    beyond = entries.filter(chain_seq__gte=expected).first()
    if beyond is not None:
        return ChainReport(checked, expected - 1, previous, _gap(expected, beyond))
    last_seq = expected - 1
    report = ChainReport(checked, last_seq, previous)

    problem = _head_problem(head, report) or _anchor_problem(expect_head, report) or _unchained_problem()
    return ChainReport(checked, last_seq, previous, problem) if problem else report


def _gap(expected: int, found: AuditEntry) -> ChainBreak:
    gap = _span(expected, found.chain_seq - 1)
    return ChainBreak(MISSING, expected, None, f"seq {gap} missing before entry {found.pk}")


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def _head_problem(head: AuditChainHead | None, report: ChainReport) -> ChainBreak | None:
    if head is None:
        if report.checked:
            return ChainBreak(HEAD, report.last_seq, None, "head missing while entries exist")
        return None
    if report.last_seq < head.seq:
        # The newest entries were deleted (their numbers are past the last one found).
        gap = _span(report.last_seq + 1, head.seq)
        return ChainBreak(MISSING, report.last_seq + 1, None, f"seq {gap} missing at the end")
    if not hmac.compare_digest(head.hash, report.last_hash):
        return ChainBreak(HEAD, head.seq, None, "head hash differs from the chain")
    return None


def _anchor_problem(expect_head: tuple[int, str] | None, report: ChainReport) -> ChainBreak | None:
    if expect_head is None:
        return None
    seq, chain_hash = expect_head
    if seq > report.last_seq:
        return ChainBreak(ANCHOR, seq, None, f"chain ends at {report.last_seq}, before the recorded {seq}")
    found = AuditEntry.objects.filter(chain_seq=seq).values_list("chain_hash", flat=True).first()
    if found is None or not hmac.compare_digest(found, chain_hash):
        return ChainBreak(ANCHOR, seq, None, "entry differs from the recorded head")
    return None


def _unchained_problem() -> ChainBreak | None:
    entry_id = AuditEntry.objects.filter(chain_seq=None).order_by("pk").values_list("pk", flat=True).first()
    if entry_id is None:
        return None
    return ChainBreak(UNCHAINED, None, entry_id, "entry without sequence number")
