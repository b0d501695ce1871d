"""Re-apply recorded erasures, and put back legal holds, after a database backup is restored.

    manage.py retention_reapply_tombstones [--import tombstones.jsonl]

A backup taken before an erasure brings the erased person back; a backup taken before a legal hold was placed
forgets the hold. The export (`manage.py retention_export_tombstones`, kept apart from the backups) names
each processed or held customer by a keyed hash; this command first puts back the holds the restored
database lacks, then loads the tombstones, finds the restored customers they name and applies the same
action again — which a restored hold still stops. Prints counts only.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from crm.retention import services


class Command(BaseCommand):
    help = (
        "バックアップ復元後に、リーガルホールド（保存義務）を戻してから、"
        "消去証跡（トゥームストーン）に記録された消去・匿名化を再適用します。"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--import", dest="path", help="先に読み込む証跡ファイル（JSON Lines）")

    def handle(self, *args: Any, path: str | None = None, **options: Any) -> None:
        if path:
            # Holds first: a tombstone re-applied to a customer a restored hold protects must be refused.
            try:
                with open(path, encoding="utf-8") as fh:
                    holds = services.legal_holds_import(lines=fh)
            except services.RetentionError as exc:
                raise CommandError(str(exc)) from exc
            for key, n in sorted(holds.items()):
                self.stdout.write(f"保存義務 {key}: {n}")
            with open(path, encoding="utf-8") as fh:
                loaded = services.tombstones_import(lines=fh)
            self.stdout.write(f"証跡を読み込みました: {loaded}件")
        counts = services.tombstones_reapply()
        if not counts:
            self.stdout.write("再適用の対象はありませんでした。")
        for key, n in sorted(counts.items()):
            self.stdout.write(f"{key}: {n}")
