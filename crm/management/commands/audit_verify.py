"""Verify the audit trail's hash chain and name the first broken entry.

    manage.py audit_verify [--batch-size 2000] [--expect-head SEQ:HASH]

Walks every entry by `chain_seq` in keyset batches (constant memory), recomputes each HMAC from the stored
row and the previous hash, and stops at the first break:

- edited     the stored hash does not match the row: it was changed in the database;
- missing    a sequence number is absent (a deleted entry), in the middle or at the end of the chain;
- unchained  a row with no sequence number: inserted without going through the model;
- head       the signed head (newest seq + hash, crm.AuditChainHead) is missing, forged or does not match;
- anchor     the chain does not contain the head given with --expect-head.

Exit status 0 and "OK" with the number of entries and the head on success; 1 with the entry on a break.
Record the printed head somewhere outside this database (ticket, WORM storage) and pass it back later
with --expect-head.

Limits:
- The check proves the trail is what was written with AUDIT_CHAIN_KEY. Someone holding that key and
  database rights can rewrite the chain; keep the key out of the database and of the DB administrators.
- Deleting the newest entries is detected through the signed head. Someone able to write the database
  who kept an old copy of the head row can restore it after deleting the entries written since: only an
  --expect-head recorded after those entries reveals that.
- Entries written while the command runs are checked by the next run (the walk stops at the head read
  at the start).
- Rows inserted with a made-up sequence number past the head are seen once the head passes them (the
  next real entry collides with them and fails, which is noticed anyway).
"""

from __future__ import annotations

import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from crm.audit import DEFAULT_BATCH_SIZE, KIND_LABELS, audit_chain_verify

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

    def handle(
        self, *args: Any, batch_size: int, expect_head: tuple[int, str] | None, **options: Any
    ) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size は1以上で指定してください。")
        report = audit_chain_verify(batch_size=batch_size, expect_head=expect_head)
        if report.problem is not None:
            p = report.problem
            raise CommandError(
                f"BROKEN {p.kind}: seq={p.seq if p.seq is not None else '-'} "
                f"entry={p.entry_id if p.entry_id is not None else '-'} ({p.detail}); "
                f"{report.checked} entries verified before it. "
                f"監査ログの改ざんの疑い: {KIND_LABELS[p.kind]}",
                returncode=1,
            )
        self.stdout.write(f"OK: {report.checked} entries verified; head {report.last_seq}:{report.last_hash}")
