"""manage.py clv_fit --calibration-end DATE [--time-unit week|day]: fit BG/NBD and Gamma-Gamma, store the
fit and every eligible customer's predictions, print the parameters as JSON (crm.analytics)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser

from crm.analytics import services
from crm.management.commands._analytics import AnalyticsCommand


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"日付は YYYY-MM-DD で指定してください: {text[:20]}") from exc


class Command(AnalyticsCommand):
    help = (
        "BG/NBD と Gamma-Gamma を推定期間の購買で最尤推定し、"
        "顧客ごとの予測購買回数・継続確率・CLVを保存します（分析の利用目的で利用できる顧客のみ）。"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--calibration-end", required=True, help="last day of the calibration period")
        parser.add_argument("--time-unit", choices=["week", "day"], default="week")
        parser.add_argument("--horizon", type=int, default=52, help="prediction horizon in time units")
        parser.add_argument("--discount-rate", type=float, default=0.1, help="annual discount rate")
        parser.add_argument(
            "--holdout-end", help="compare predicted and actual repeat purchases up to this day"
        )
        super().add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        calibration_end = _date(options["calibration_end"])
        holdout_end = _date(options["holdout_end"]) if options["holdout_end"] else None
        if holdout_end and holdout_end <= calibration_end:
            raise CommandError("--holdout-end は --calibration-end より後の日付にしてください。")
        try:
            fit = services.clv_fit_run(
                calibration_end=calibration_end,
                time_unit=options["time_unit"],
                horizon=options["horizon"],
                discount_rate=options["discount_rate"],
                holdout_end=holdout_end,
                **self.eligible(options),
            )
        except ValueError as exc:
            raise CommandError("推定に使える顧客がいません。") from exc
        out = services.clv_fit_summary(fit)
        self.stdout.write(json.dumps(out, ensure_ascii=False))
        if fit.holdout:
            sys.stderr.write(_holdout_table(fit.holdout))


def _holdout_table(holdout: dict[str, Any]) -> str:
    """Predicted vs actual repeat purchases in the holdout, by calibration frequency (a readable table)."""
    lines = [
        f"検証期間（〜{holdout['holdout_end']}）のリピート購買: "
        f"予測 {holdout['predicted']} / 実績 {holdout['actual']}",
        "x\t顧客数\t予測平均\t実績平均",
    ]
    for row in holdout["by_frequency"]:
        lines.append(f"{row['x']}\t{row['customers']}\t{row['predicted_mean']}\t{row['actual_mean']}")
    return "\n".join(lines) + "\n"
