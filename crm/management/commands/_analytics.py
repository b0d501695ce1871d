"""What the analytics commands (clv_fit, rfm_compute) share: they score only the customers a purpose's lawful
basis lets analytics use (crm.analytics.eligibility), the purpose named by `--purpose`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from crm.analytics.eligibility import ANALYTICS_PURPOSE, eligible_customers


class AnalyticsCommand(BaseCommand):
    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--purpose", default=ANALYTICS_PURPOSE, help="purpose code whose lawful basis decides"
        )

    @staticmethod
    def eligible(options: dict[str, Any]) -> dict[str, Any]:
        """The service's `eligible` customers and the `purpose_code` that decided them."""
        return {"eligible": eligible_customers(options["purpose"]), "purpose_code": options["purpose"]}
