"""Verification: recompute the chain from the first entry and name the first place it breaks.

It never writes: entries not sealed yet are reported as such (genuine ones as pending, ones whose MAC is
wrong as unchained), never chained by the verifier itself, which would chain a forgery along with them.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from crm.audit.anchor import anchor_heads, anchor_path
from crm.models import GENESIS_HASH, AuditChainHead, AuditEntry

DEFAULT_BATCH_SIZE = 2000

# What a break means, shown by `audit_verify` and stored in ChainBreak.kind.
EDITED = "edited"  # the stored hash does not match the entry: the row was changed in the database
MISSING = "missing"  # a sequence number is absent: an entry was deleted
UNCHAINED = "unchained"  # a row without a valid entry_mac: inserted around the model, or a copy of another
HEAD = "head"  # the signed head does not match the chain: newest entries removed or head forged/replayed
ANCHOR = "anchor"  # the chain does not reach a head recorded outside the database (wiped, rolled back)
KIND_LABELS = {
    EDITED: "記録後に変更された行",
    MISSING: "欠落（削除された行）",
    UNCHAINED: "チェーンを経ずに挿入された行（複製を含む）",
    HEAD: "末尾の署名・連番の不一致",
    ANCHOR: "外部に記録した末尾と不一致（消去・巻き戻し）",
}


@dataclass(frozen=True)
class ChainBreak:
    """The first place where the stored trail differs from what was written."""

    kind: str
    seq: int | None
    entry_id: int | None
    detail: str


@dataclass(frozen=True)
class ChainReport:
    """Outcome of one verification: entries checked, the head they lead to, genuine entries still pending
    (written, not sealed yet) and the anchored head checked against, if any."""

    checked: int
    last_seq: int
    last_hash: str
    problem: ChainBreak | None = None
    pending: int = 0
    anchored_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def audit_chain_verify(
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    expect_head: tuple[int, str] | None = None,
    anchor_file: Path | None = None,
) -> ChainReport:
    """Recompute the audit chain from the first entry and report the first break.

    Entries are read in batches of consecutive numbers (`last < chain_seq <= last + batch_size`, a keyset
    on the unique index), so memory and the cost of each query stay constant whatever the size of the
    trail. The walk stops at the signed head read at the start: entries written while it runs belong to the
    next verification. The chain must reach the highest head in the anchor file (`anchor_file`, by default
    settings.AUDIT_ANCHOR_PATH) and, when given, `expect_head`, a (seq, hash) recorded elsewhere.
    """
    anchor_source = anchor_file or anchor_path()
    anchored_heads = anchor_heads(anchor_source)
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
                broken = ChainBreak(EDITED, entry.chain_seq, entry.pk, "hash mismatch")
                return ChainReport(checked, expected - 1, previous, broken)
            previous, expected, checked = entry.chain_hash, expected + 1, checked + 1
        if len(batch) < batch_size:
            break
    # A short batch ends the walk; an entry further on means the numbers in between were deleted.
    beyond = entries.filter(chain_seq__gte=expected).first()
    if beyond is not None:
        return ChainReport(checked, expected - 1, previous, _gap(expected, beyond))
    last_seq = expected - 1
    report = ChainReport(checked, last_seq, previous)

    anchors = [(a.seq, a.hash, "anchor file") for a in anchored_heads]
    if expect_head is not None:
        anchors.append((*expect_head, "--expect-head"))
    problem = _head_problem(head, report) or _anchor_problem(anchors, report)
    if problem is None and anchor_source is not None and not anchored_heads and checked:
        # Anchoring is on, yet no head of this non-empty chain was ever recorded: the file was removed or
        # replaced (the sealer anchors the head when it starts and after every seal).
        problem = ChainBreak(ANCHOR, last_seq, None, f"no head anchored in {anchor_source}")
    pending, unchained = _pending_entries(batch_size)
    problem = problem or unchained
    return ChainReport(
        checked,
        last_seq,
        previous,
        problem,
        pending=pending,
        anchored_seq=max((a.seq for a in anchored_heads), default=None),
    )


def _gap(expected: int, found: AuditEntry) -> ChainBreak:
    gap = _span(expected, cast(int, found.chain_seq) - 1)  # found among the chained (chain_seq >= expected)
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


def _anchor_problem(anchors: list[tuple[int, str, str]], report: ChainReport) -> ChainBreak | None:
    """The highest head recorded outside the database that the chain does not hold (one query for all)."""
    reachable = {seq for seq, _hash, _source in anchors if seq <= report.last_seq}
    stored = dict(AuditEntry.objects.filter(chain_seq__in=reachable).values_list("chain_seq", "chain_hash"))
    for seq, chain_hash, source in sorted(anchors, reverse=True):
        if seq > report.last_seq:
            detail = f"chain ends at {report.last_seq}, before the head {seq} recorded in the {source}"
            return ChainBreak(ANCHOR, seq, None, detail)
        found = stored.get(seq)
        if found is None or not hmac.compare_digest(found, chain_hash):
            return ChainBreak(ANCHOR, seq, None, f"entry differs from the head recorded in the {source}")
    return None


def _pending_entries(batch_size: int) -> tuple[int, ChainBreak | None]:
    """(genuine entries waiting for the sealer, the first pending row whose MAC is wrong), read in keyset
    batches of the partial index of pending rows (normally empty, or a few rows for a moment)."""
    genuine, after = 0, 0
    while True:
        batch = list(AuditEntry.objects.filter(chain_seq=None, pk__gt=after).order_by("pk")[:batch_size])
        for entry in batch:
            if not entry.entry_mac_valid():
                return genuine, ChainBreak(UNCHAINED, None, entry.pk, "entry without a valid signature")
            genuine += 1
        if len(batch) < batch_size:
            return genuine, None
        after = batch[-1].pk
