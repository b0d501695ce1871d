"""manage.py rfm_compute [--as-of DATE] [--bins 5] [--method ntile|cume_dist]: RFM scores and segments for
every customer the analytics purpose may use (crm.analytics)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from crm.analytics import rules, services
from crm.management.commands._analytics import AnalyticsCommand


class Command(AnalyticsCommand):
    help = "RFMスコアとセグメントを、分析の利用目的で利用できる全顧客について一度に計算して保存します。"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as-of", help="reference day (default: today in Japan)")
        parser.add_argument("--bins", type=int, default=rules.DEFAULT_BINS)
        parser.add_argument("--method", choices=services.RFM_METHODS, default="ntile")
        super().add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            as_of = dt.date.fromisoformat(options["as_of"]) if options["as_of"] else timezone.localdate()
        except ValueError as exc:
            raise CommandError("--as-of は YYYY-MM-DD で指定してください。") from exc
        if not 2 <= options["bins"] <= rules.MAX_BINS:
            raise CommandError(f"--bins は 2〜{rules.MAX_BINS} で指定してください。")
        run = services.rfm_compute(
            as_of=as_of, bins=options["bins"], method=options["method"], **self.eligible(options)
        )
        self.stdout.write(
            json.dumps(
                {"run": run.pk, "as_of": str(run.as_of), "customers": run.customers, "seconds": run.seconds}
            )
        )
