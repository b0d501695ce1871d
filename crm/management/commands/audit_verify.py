"""Verify the audit trail's hash chain and name the first broken entry.

    manage.py audit_verify [--batch-size 2000] [--anchor-file PATH] [--expect-head SEQ:HASH]

Walks every entry by `chain_seq` in keyset batches (constant memory), recomputes each HMAC from the stored
row and the previous hash, and stops at the first break:

- edited     the stored hash does not match the row: it was changed in the database;
- missing    a sequence number is absent (a deleted entry), in the middle or at the end of the chain;
- unchained  a row not sealed whose signature is wrong: inserted without the model, or a copy of a genuine
             row (INSERT … SELECT) under another id;
- head       the signed head (newest seq + hash, crm.AuditChainHead) is missing, forged or does not match;
- anchor     the chain does not reach the head anchored outside the database: by default the highest head
             in AUDIT_ANCHOR_PATH (the sealer appends each one), or that of --anchor-file (a copy shipped
             off the host), and the head given with --expect-head; a wiped or rolled-back trail fails here.

It never writes, and never seals: genuine entries written but not chained yet are counted as such in the
output ("N entries not sealed yet"); the sealer process (`manage.py audit_sealer`) chains them.

Exit status 0 and "OK" with the number of entries and the head on success; 1 with the entry on a break.

Limits:
- The check proves the trail is what was written with AUDIT_CHAIN_KEY. Someone holding that key and
  database rights can rewrite the chain; keep the key out of the database and of the DB administrators.
- Deleting the newest entries is detected through the signed head; wiping the trail or putting an old copy
  of it back, through the anchored head. Someone who can also rewrite the anchor file is caught only by the
  copy of the "crm.audit.anchor" log shipped off the host (pass it with --anchor-file or --expect-head).
- Entries written while the command runs are checked by the next run (the walk stops at the head read
  at the start).
- Rows inserted with a made-up sequence number past the head are seen once the head passes them (the
  next real entry collides with them and fails, which is noticed anyway).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from crm.audit.verification import DEFAULT_BATCH_SIZE, KIND_LABELS, audit_chain_verify

_HEAD = re.compile(r"^(\d+):([0-9a-f]{64})$")


def _head(value: str) -> tuple[int, str]:
    match = _HEAD.match(value.strip().lower())
    if not match:
        raise CommandError("--expect-head は「連番:ハッシュ（64桁の16進数）」の形式で指定してください。")
    return int(match.group(1)), match.group(2)


class Command(BaseCommand):
    help = "監査ログのハッシュチェーンを検証し、最初の改ざん・欠落箇所を報告します。"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
        parser.add_argument("--expect-head", type=_head, default=None, metavar="SEQ:HASH")
        parser.add_argument("--anchor-file", type=Path, default=None, metavar="PATH")

    def handle(
        self,
        *args: Any,
        batch_size: int,
        expect_head: tuple[int, str] | None,
        anchor_file: Path | None,
        **options: Any,
    ) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size は1以上で指定してください。")
        if anchor_file is not None and not anchor_file.is_file():
            raise CommandError(f"--anchor-file {anchor_file} が見つかりません。")
        report = audit_chain_verify(batch_size=batch_size, expect_head=expect_head, anchor_file=anchor_file)
        if report.problem is not None:
            p = report.problem
            raise CommandError(
                f"BROKEN {p.kind}: seq={p.seq if p.seq is not None else '-'} "
                f"entry={p.entry_id if p.entry_id is not None else '-'} ({p.detail}); "
                f"{report.checked} entries verified before it. "
                f"監査ログの改ざんの疑い: {KIND_LABELS[p.kind]}",
                returncode=1,
            )
        anchored = f"; anchored head {report.anchored_seq} reached" if report.anchored_seq is not None else ""
        pending = f"; {report.pending} entries not sealed yet" if report.pending else ""
        head = f"{report.last_seq}:{report.last_hash}"
        self.stdout.write(f"OK: {report.checked} entries verified; head {head}{anchored}{pending}")
