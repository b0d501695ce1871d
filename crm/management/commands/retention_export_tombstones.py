"""Export every tombstone, and every legal hold, as JSON Lines, to keep beside (not inside) the backups.

manage.py retention_export_tombstones PATH

A restored backup brings back people erased since and forgets holds placed since: the file holds both, each
naming the customer by a keyed hash only (legal-hold lines carry `"kind": "legal_hold"`), and
`retention_reapply_tombstones --import PATH` puts the holds back first, then re-applies the erasures.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from crm.retention import services


class Command(BaseCommand):
    help = (
        "消去証跡（トゥームストーン）とリーガルホールド（保存義務）をJSON Lines形式で書き出します"
        "（バックアップとは別に保管）。"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")

    def handle(self, *args: Any, path: str, **options: Any) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            n = services.tombstones_export(stream=fh)
            holds = services.legal_holds_export(stream=fh)
        self.stdout.write(f"{n}件の証跡と{holds}件の保存義務を書き出しました。")
