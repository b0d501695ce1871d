"""Re-encrypt every encrypted column under the newest key of FIELD_ENCRYPTION_KEYS, bound to its column.

Key rotation, step by step (see also `manage.py generate_keys --field-key`):

1. Generate a key and put it FIRST in FIELD_ENCRYPTION_KEYS on every web and worker process, keeping the old
   keys after it; restart. New writes are now encrypted under it, old data still opens.
2. `manage.py rotate_keys` re-encrypts the stored tokens. Safe to stop and run again: tokens already under
   the newest key are only counted, and `--start-after ID` skips rows done by an interrupted run.
3. `manage.py rotate_keys --dry-run` shows how many tokens and sealed files each key still opens: 0 under
   the old keys. (The files sealed outside the database, the disclosure packages, are re-sealed by the same
   run: crm.sealed_files.)
4. Remove the old keys from FIELD_ENCRYPTION_KEYS; restart.

The same run moves unbound tokens (format 0x02 and Fernet, written before tokens were bound to their
column; see crm.crypto) to the bound format, even under a key that is already the newest: they are counted
as to rotate, and separately as "unbound". Once a run reports 0 unbound tokens, FIELD_TOKENS_REQUIRE_BOUND can
be turned on. A token that opens under no key as a value of its own column (a wrong key, or a token moved
from another column) is reported by column and primary key and left as it is.

How: the columns are found, not listed (every field of every installed model that is an encrypted field,
crm.fields._EncryptedMixin). Each table is walked by primary key (keyset, `id > last`), one batch per
transaction; the batch is locked (FOR UPDATE) so a concurrent save cannot be overwritten by an older token,
and the raw tokens are read and written with SQL. Nothing passes through the ORM's save: the clear values do
not change, so blind indexes, `updated_at` and the per-row audit log must not change either. One summary
audit entry is written per run, with counts only.
"""

from __future__ import annotations

import getpass
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, models, transaction

from crm.checks import EncryptionKeyError, verify_encryption_canary
from crm.crypto import (
    DecryptionError,
    is_bound,
    is_current,
    key_fingerprint,
    reencrypt_token,
    reseal_stream,
    stream_key_index,
    token_key_index,
)
from crm.fields import _EncryptedMixin
from crm.models import AuditEntry, EncryptionCanary
from crm.sealed_files import PROVIDERS, SealedFile

UNREADABLE_SHOWN = 10  # ids listed per column when no key opens a token


def encrypted_models() -> list[tuple[type[models.Model], list[_EncryptedMixin]]]:
    """Every concrete model with encrypted columns in its own table, and those columns, by label."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        columns = [f for f in model._meta.local_concrete_fields if isinstance(f, _EncryptedMixin)]
        if columns:
            found.append((model, columns))
    return sorted(found, key=lambda item: item[0]._meta.label)


@dataclass
class TableReport:
    """What one table held and what the run did to it. Counts and ids only, never a value."""

    label: str
    rows: int = 0
    empty: int = 0
    rotated: int = 0
    outdated: int = 0  # tokens not in the bound format under the newest key (what a run rewrites)
    unbound: int = 0  # of those, tokens not bound to their column (0x02, Fernet)
    by_key: Counter[int] = field(default_factory=Counter)
    unreadable: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def unreadable_count(self) -> int:
        return sum(len(ids) for ids in self.unreadable.values())

    def as_audit(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "tokens_by_key": {str(k): n for k, n in sorted(self.by_key.items())},
            "rotated": self.rotated,
            "empty": self.empty,
            "unbound": self.unbound,
            "unreadable": self.unreadable_count,
        }


@dataclass
class FilesReport:
    """The sealed files of one kind (crm.sealed_files) and what the run did to them: counts and labels."""

    kind: str
    by_key: Counter[int] = field(default_factory=Counter)
    resealed: int = 0
    unreadable: list[str] = field(default_factory=list)

    def as_audit(self) -> dict[str, Any]:
        return {
            "files_by_key": {str(k): n for k, n in sorted(self.by_key.items())},
            "resealed": self.resealed,
            "unreadable": len(self.unreadable),
        }


class Command(BaseCommand):
    help = (
        "暗号化フィールドを FIELD_ENCRYPTION_KEYS の先頭（最新）の鍵で再暗号化します。"
        "--dry-run は鍵ごとのトークン数だけを数えます。"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="数えるだけで書き換えない")
        parser.add_argument("--batch-size", type=int, default=2000, help="1トランザクションの行数")
        parser.add_argument(
            "--sample", type=int, default=0, help="--dry-run で各テーブルから無作為に数える行数（0 = 全件）"
        )
        parser.add_argument(
            "--start-after", default=None, help="この主キーより後の行から再開（中断した実行の続き）"
        )
        parser.add_argument("--model", action="append", default=[], help="対象モデル（例: crm.Customer）")

    def handle(self, *args: Any, **opts: Any) -> None:
        dry_run: bool = opts["dry_run"]
        batch_size: int = opts["batch_size"]
        sample: int = opts["sample"]
        if batch_size < 1:
            raise CommandError("--batch-size は1以上にしてください。")
        if sample and not dry_run:
            raise CommandError("--sample は --dry-run と一緒に使います（再暗号化は全件です）。")
        # Refuse before touching anything when the keys cannot open what is stored.
        try:
            verify_encryption_canary()
        except EncryptionKeyError as exc:
            raise CommandError(str(exc)) from exc

        targets = encrypted_models()
        if opts["model"]:
            wanted = {label.lower() for label in opts["model"]}
            targets = [(m, f) for m, f in targets if m._meta.label_lower in wanted]
            if not targets:
                raise CommandError("指定されたモデルに暗号化フィールドがありません。")

        keys = [key_fingerprint(i) for i in range(len(settings.FIELD_ENCRYPTION_KEYS))]
        self.stdout.write(
            f"{'件数確認（dry-run）' if dry_run else '再暗号化'}: 最新の鍵 #0 [{keys[0]}]、"
            f"設定された鍵 {len(keys)} 個"
        )
        reports = []
        for model, columns in targets:
            if dry_run and sample:
                report = self._sample(model, columns, sample)
            else:
                report = self._walk(model, columns, batch_size, dry_run, opts["start_after"])
            reports.append(report)

        # The files sealed outside the database (disclosure packages): with every run that is not limited to
        # named models.
        files = [] if opts["model"] else [self._files(kind, dry_run) for kind in sorted(PROVIDERS)]

        # Only a full count may say no unbound token is left (not a sample, one model or a resumed walk).
        complete = not sample and not opts["model"] and opts["start_after"] is None
        self._summary(reports, keys, dry_run, complete=complete)
        self._files_summary(files, keys, dry_run)
        self._audit(reports, keys, dry_run=dry_run, sample=sample, files=files)
        unreadable = sum(r.unreadable_count for r in reports) + sum(len(f.unreadable) for f in files)
        if unreadable:
            raise CommandError(
                f"どの鍵でも開けないトークンが {unreadable:,} 件あります"
                "（上記の列と主キーを確認してください）。"
                "それを暗号化した鍵を FIELD_ENCRYPTION_KEYS に加えて再実行してください。"
                "鍵が正しければ、別の列から移された（列に結び付いた検証に失敗した）トークンです。"
            )

    # --- sealed files -------------------------------------------------------------------------------

    def _files(self, kind: str, dry_run: bool) -> FilesReport:
        """Count one kind's files by the key in their header; unless a dry run, re-seal those under an older
        key (each while its owner's row is held, into a partial file made whole and then put in its place)."""
        report = FilesReport(kind)
        for item in PROVIDERS[kind]():
            try:
                with item.path.open("rb") as sealed:
                    index = stream_key_index(sealed)
            except FileNotFoundError:
                continue  # removed since it was listed
            if index is None:
                report.unreadable.append(item.bound_to)
                continue
            if index == 0 or dry_run:
                report.by_key[index] += 1
                continue
            with item.hold() as live:
                if live:
                    try:
                        _reseal(item)
                    except DecryptionError:
                        # Its header names a key, its chunks do not open under it (tampered, cut, moved):
                        # left as it is and reported, as an unreadable token is.
                        report.unreadable.append(item.bound_to)
                        continue
                    report.resealed += 1
                    index = 0
            report.by_key[index] += 1
        return report

    def _files_summary(self, files: list[FilesReport], keys: list[str], dry_run: bool) -> None:
        for report in files:
            parts = [f"鍵 #{i} [{keys[i]}]: {report.by_key.get(i, 0):,}" for i in range(len(keys))]
            done = "" if dry_run else f"（再封印 {report.resealed:,} 件）"
            self.stdout.write(f"封印ファイル {report.kind}: " + "、".join(parts) + done)
            for label in report.unreadable[:UNREADABLE_SHOWN]:
                self.stdout.write(f"    どの鍵でも開けない封印ファイル: {label}")

    # --- walking a table ------------------------------------------------------------------------------

    def _walk(
        self,
        model: type[models.Model],
        columns: list[_EncryptedMixin],
        batch_size: int,
        dry_run: bool,
        start_after: Any,
    ) -> TableReport:
        qn = connection.ops.quote_name
        table, pk = qn(model._meta.db_table), qn(model._meta.pk.column)
        cols = ", ".join(qn(f.column) for f in columns)
        lock = "" if dry_run else " FOR UPDATE"
        # Identifiers come from the model definitions, never from input; values are parameters.
        first_sql = f"SELECT {pk}, {cols} FROM {table} ORDER BY {pk} LIMIT %s{lock}"  # noqa: S608
        next_sql = f"SELECT {pk}, {cols} FROM {table} WHERE {pk} > %s ORDER BY {pk} LIMIT %s{lock}"  # noqa: S608
        sets = ", ".join(f"{qn(f.column)} = %s" for f in columns)
        update_sql = f"UPDATE {table} SET {sets} WHERE {pk} = %s"  # noqa: S608

        report = TableReport(model._meta.label)
        estimate = self._estimated_rows(model._meta.db_table)
        last = model._meta.pk.to_python(start_after) if start_after is not None else None
        while True:
            # One transaction per batch: a crash loses at most one batch of work, never leaves it half done.
            with transaction.atomic(), connection.cursor() as cur:
                if last is None:
                    cur.execute(first_sql, [batch_size])
                else:
                    cur.execute(next_sql, [last, batch_size])
                rows = cur.fetchall()
                updates = [u for row in rows if (u := self._row(row, columns, report, dry_run)) is not None]
                if updates:
                    cur.executemany(update_sql, updates)
            if not rows:
                break
            last = rows[-1][0]
            report.rows += len(rows)
            self.stdout.write(
                f"  {report.label}: {report.rows:,}/{max(estimate, report.rows):,} 行（主キー ≤ {last}）"
                + (f"要再暗号化 {report.outdated:,} 件" if dry_run else f"再暗号化 {report.rotated:,} 件")
            )
        return report

    def _row(
        self, row: tuple[Any, ...], columns: list[_EncryptedMixin], report: TableReport, dry_run: bool
    ) -> list[Any] | None:
        """Count one row's tokens; the UPDATE parameters when any of them must move to the newest key."""
        pk_value, *tokens = row
        changed = False
        for i, (column, token) in enumerate(zip(columns, tokens, strict=True)):
            if token is None or token == "":
                report.empty += 1
                continue
            label = column.encrypted_column_label
            if dry_run:
                index, fresh = token_key_index(token, bound_to=label), None
            else:
                index, fresh = reencrypt_token(token, bound_to=label)
            if index is None:
                report.unreadable.setdefault(column.name, []).append(pk_value)
                continue
            report.by_key[index] += 1
            if not is_current(token):
                report.outdated += 1
            if not is_bound(token):
                report.unbound += 1
            if fresh is not None:
                tokens[i] = fresh
                report.rotated += 1
                changed = True
        return [*tokens, pk_value] if changed else None

    def _sample(self, model: type[models.Model], columns: list[_EncryptedMixin], size: int) -> TableReport:
        """Dry run on about `size` random rows (TABLESAMPLE), for a quick look at a very large table."""
        qn = connection.ops.quote_name
        table = qn(model._meta.db_table)
        cols = ", ".join(qn(f.column) for f in columns)
        estimate = self._estimated_rows(model._meta.db_table)
        report = TableReport(model._meta.label)
        with connection.cursor() as cur:
            if estimate > size * 2:
                percent = min(100.0, 100.0 * size * 2 / estimate)
                cur.execute(
                    f"SELECT {qn(model._meta.pk.column)}, {cols} FROM {table} "  # noqa: S608
                    "TABLESAMPLE BERNOULLI (%s) LIMIT %s",
                    [percent, size],
                )
            else:
                cur.execute(
                    f"SELECT {qn(model._meta.pk.column)}, {cols} FROM {table} ORDER BY random() LIMIT %s",  # noqa: S608
                    [size],
                )
            rows = cur.fetchall()
        for row in rows:
            self._row(row, columns, report, dry_run=True)
        report.rows = len(rows)
        total = f"{estimate:,} 行" if estimate else "不明"
        self.stdout.write(f"  {report.label}: 標本 {report.rows:,} 行（推定総数 {total}）")
        return report

    @staticmethod
    def _estimated_rows(table: str) -> int:
        """Planner estimate (pg_class.reltuples), for progress only: COUNT(*) would scan the whole table."""
        with connection.cursor() as cur:
            cur.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                [connection.ops.quote_name(table)],
            )
            row = cur.fetchone()
        return max(int(row[0]), 0) if row and row[0] is not None else 0

    # --- reporting ------------------------------------------------------------------------------------

    def _summary(self, reports: list[TableReport], keys: list[str], dry_run: bool, *, complete: bool) -> None:
        self.stdout.write("鍵ごとのトークン数" + ("（実行前）" if not dry_run else "") + ":")
        for report in reports:
            parts = [
                f"鍵 #{i} [{keys[i]}]{'（最新）' if i == 0 else ''}: {report.by_key.get(i, 0):,}"
                for i in range(len(keys))
            ]
            self.stdout.write(
                f"  {report.label}: {report.rows:,} 行 — "
                + "、".join(parts)
                + f"、空 {report.empty:,}"
                + f"（うち旧形式・旧鍵 {report.outdated:,}、列に未結合 {report.unbound:,}）"
            )
            for column, ids in report.unreadable.items():
                shown = ", ".join(str(i) for i in ids[:UNREADABLE_SHOWN])
                more = "…" if len(ids) > UNREADABLE_SHOWN else ""
                self.stdout.write(
                    f"    開けないトークン {report.label}.{column}: {len(ids):,} 件（主キー {shown}{more}）"
                )
        unbound = sum(r.unbound for r in reports)
        if dry_run:
            self.stdout.write(
                f"列に結び付いていないトークン: {unbound:,} 件"
                + (
                    "（rotate_keys で結び付けます）"
                    if unbound
                    else "（FIELD_TOKENS_REQUIRE_BOUND を有効にできます）"
                    if complete
                    else "（全件・全モデルを数えた結果ではありません）"
                )
            )
            return
        total_rotated = sum(r.rotated for r in reports)
        total = sum(sum(r.by_key.values()) for r in reports)
        self.stdout.write(
            f"完了: {total_rotated:,} 件を鍵 #0 [{keys[0]}] で再暗号化。"
            f"鍵ごとのトークン数（実行後）: 鍵 #0 [{keys[0]}]（最新）: {total:,}"
            + "".join(f"、鍵 #{i} [{keys[i]}]: 0" for i in range(1, len(keys)))
        )

    def _audit(
        self,
        reports: list[TableReport],
        keys: list[str],
        *,
        dry_run: bool,
        sample: int,
        files: list[FilesReport],
    ) -> None:
        """One summary entry per run: bulk SQL is invisible to django-auditlog. Counts and key fingerprints
        only (a fingerprint names a key without revealing it)."""
        from django.contrib.contenttypes.models import ContentType

        rotated = sum(r.rotated for r in reports)
        AuditEntry.objects.create(
            content_type=ContentType.objects.get_for_model(EncryptionCanary),
            object_pk="rotate_keys",
            object_repr="暗号鍵ローテーション（rotate_keys）",
            action=AuditEntry.Action.ACCESS if dry_run else AuditEntry.Action.UPDATE,
            changes_text=(
                "鍵ごとの暗号トークン数を確認しました（dry-run）"
                if dry_run
                else f"暗号化フィールドを鍵 [{keys[0]}] で再暗号化しました（{rotated:,} 件）"
            ),
            additional_data={
                "command": "rotate_keys",
                "dry_run": dry_run,
                "sample": sample or None,
                "keys": keys,
                "operator": _operator(),
                "models": {r.label: r.as_audit() for r in reports},
                "sealed_files": {f.kind: f.as_audit() for f in files},
            },
        )


def _reseal(item: SealedFile) -> None:
    """Seal `item` anew under the newest key beside it (`.<name>.reseal.partial`, synced), then put it in the
    file's place with one rename: a reader holding the old file reads it to its end, the next opens the new
    one, and a crash leaves the old file whole (the partial is removed, or swept with its package)."""
    partial = item.path.with_name(f".{item.path.name}.reseal.partial")
    partial.unlink(missing_ok=True)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with item.path.open("rb") as src, os.fdopen(fd, "wb") as dst:
            reseal_stream(src, dst, bound_to=item.bound_to)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(partial, item.path)
        directory = os.open(item.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        partial.unlink(missing_ok=True)


def _operator() -> str:
    """The OS account that ran the command (there is no request user)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
