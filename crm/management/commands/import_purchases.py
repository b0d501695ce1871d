"""manage.py import_purchases FILE --team TEAM: import a purchases CSV (crm.analytics.imports)."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from crm.analytics import services
from crm.analytics.models import PurchaseImport
from crm.models import Team


class Command(BaseCommand):
    help = (
        "購買CSV（external_id,purchased_at,amount[,quantity,category,channel]）をチームに取り込みます。"
        "存在しない外部IDの顧客は作成します。同じファイルを再度取り込んでも何も変わりません。"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="CSV file ('-' for standard input)")
        parser.add_argument("--team", required=True, help="importing team: id or name")
        parser.add_argument(
            "--all-or-nothing", action="store_true", help="refuse the whole file when any row has an error"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        team_ref = options["team"]
        team = Team.objects.filter(pk=int(team_ref)).first() if team_ref.isdigit() else None
        team = team or Team.objects.filter(name=team_ref).first()
        if team is None:
            raise CommandError("チームが見つかりません。")
        name = options["file"]
        batch = PurchaseImport.objects.create(
            team=team, file_name=name[-200:], all_or_nothing=options["all_or_nothing"]
        )
        try:
            stream = sys.stdin.buffer if name == "-" else open(name, "rb")
        except OSError as exc:
            raise CommandError(f"ファイルを開けません: {exc.strerror}") from exc
        with stream:
            batch = services.purchase_import_run(batch_id=batch.pk, stream=stream)
        self.stdout.write(
            json.dumps(
                {
                    "batch": batch.pk,
                    "status": batch.status,
                    "rows": batch.rows_total,
                    "inserted": batch.rows_inserted,
                    "duplicates": batch.rows_duplicate,
                    "invalid": batch.rows_invalid,
                    "customers_created": batch.customers_created,
                    "errors": batch.errors[:20],
                },
                ensure_ascii=False,
            )
        )
        if batch.status != PurchaseImport.Status.DONE:
            raise CommandError(f"取込は完了しませんでした（{batch.get_status_display()}）。")
