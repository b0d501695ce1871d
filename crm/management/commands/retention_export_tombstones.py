"""Export every tombstone as JSON Lines, to keep beside (not inside) the database backups.

manage.py retention_export_tombstones PATH
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from crm.retention import services


class Command(BaseCommand):
    help = "消去証跡（トゥームストーン）をJSON Lines形式で書き出します（バックアップとは別に保管）。"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")

    def handle(self, *args: Any, path: str, **options: Any) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            n = services.tombstones_export(stream=fh)
        self.stdout.write(f"{n}件の証跡を書き出しました。")
