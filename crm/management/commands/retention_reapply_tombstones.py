"""Re-apply recorded erasures after a database backup is restored.

    manage.py retention_reapply_tombstones [--import tombstones.jsonl]

A backup taken before an erasure brings the erased person back. Tombstones (exported with
`manage.py retention_export_tombstones`, kept apart from the backups) name each processed customer by a keyed
hash; this command loads them, finds the restored customers they name and applies the same action again.
Prints counts only.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from crm.retention import services


class Command(BaseCommand):
    help = "バックアップ復元後に、消去証跡（トゥームストーン）に記録された消去・匿名化を再適用します。"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--import", dest="path", help="先に読み込む証跡ファイル（JSON Lines）")

    def handle(self, *args: Any, path: str | None = None, **options: Any) -> None:
        if path:
            with open(path, encoding="utf-8") as fh:
                loaded = services.tombstones_import(lines=fh)
            self.stdout.write(f"証跡を読み込みました: {loaded}件")
        counts = services.tombstones_reapply()
        if not counts:
            self.stdout.write("再適用の対象はありませんでした。")
        for key, n in sorted(counts.items()):
            self.stdout.write(f"{key}: {n}")
