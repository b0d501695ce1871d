"""What crm holds about a customer, registered with the disclosure registry (crm.disclosure.registry):
the customer record, purchases, behavioural events, the legal holds applied (保存義務の適用) and the sources
the data came from (取得元)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.db.models import Count, Max, Min
from django.utils.translation import gettext_lazy as _

from crm.disclosure.registry import (
    DATETIME,
    NUMBER,
    Column,
    ModelSection,
    SectionContext,
    disclosure_section_register,
)
from crm.models import Customer, CustomerEvent, Purchase


class SourcesSection:
    """Where the data about the person came from (取得元, APPI Art. 33 with 32(1); GDPR Art. 15(1)(g)): how
    the record itself was collected, and each channel or sending system of their purchases and events, with
    counts and the first and last time. Three small aggregates, never the rows themselves."""

    key = "crm.sources"
    title = _("取得元（個人データの入手経路）")
    about_person = True

    KINDS = (
        ("customer", _("本人情報の登録")),
        ("purchases", _("購買")),
        ("events", _("行動イベント")),
    )

    def columns(self, ctx: SectionContext) -> list[Column]:
        return [
            Column("kind", _("データの種類"), choices=self.KINDS),
            Column("channel", _("取得経路・送信元"), choices=tuple(Customer.Channel.choices)),
            Column("count", _("件数"), kind=NUMBER),
            Column("first_at", _("最初の取得"), kind=DATETIME),
            Column("last_at", _("最後の取得"), kind=DATETIME),
        ]

    def rows(self, ctx: SectionContext) -> Iterator[Sequence[Any]]:
        if ctx.customer_id is None:
            return
        cid = ctx.customer_id
        for channel, collected_at in Customer.objects.filter(pk=cid).values_list(
            "collection_channel", "collected_at"
        ):
            yield ("customer", channel, 1, collected_at, collected_at)
        by = {"n": Count("pk")}
        for kind, model, channel, at in (
            ("purchases", Purchase, "channel", "purchased_at"),
            ("events", CustomerEvent, "source", "occurred_at"),
        ):
            grouped = (
                model._default_manager.filter(customer_id=cid)
                .values(channel)
                .annotate(**by, first=Min(at), last=Max(at))
                .order_by(channel)
                .values_list(channel, "n", "first", "last")
            )
            for value, n, first, last in grouped:
                yield (kind, value, n, first, last)


def register() -> None:
    """crm's sections (crm.apps.CrmConfig.ready)."""
    for section in (
        ModelSection(
            "crm.customer",
            _("顧客情報"),
            "crm.Customer",
            context=("id", "status", "created_at", "updated_at", "last_activity_at", "closed_at"),
            customer="pk",
        ),
        ModelSection(
            "crm.purchases",
            _("購買履歴"),
            "crm.Purchase",
            context=("id", "currency", "channel"),
            order_by=("purchased_at", "pk"),
        ),
        ModelSection(
            "crm.events",
            _("行動イベント"),
            "crm.CustomerEvent",
            context=("id", "source"),
            order_by=("occurred_at", "pk"),
        ),
        ModelSection(
            "crm.retention",
            _("保存義務の適用（リーガルホールド）"),
            "crm.LegalHold",
            context=("id", "reason", "reference", "placed_at", "until", "released_at"),
            order_by=("placed_at", "pk"),
        ),
        # Scores computed about the person (profiling, GDPR Art. 15(1)(h)): the inputs and the results, with
        # the run or fit they came from.
        ModelSection(
            "crm.rfm_scores",
            _("RFM分析の結果"),
            "crm.RfmScore",
            context=(
                "id",
                "run__as_of",
                "recency_days",
                "frequency",
                "monetary",
                "r_score",
                "f_score",
                "m_score",
            ),
            order_by=("run_id", "pk"),
        ),
        ModelSection(
            "crm.clv_scores",
            _("顧客生涯価値（CLV）の予測"),
            "crm.ClvScore",
            context=("id", "fit__calibration_end", "expected_purchases", "p_alive", "clv"),
            order_by=("fit_id", "pk"),
        ),
        SourcesSection(),
    ):
        disclosure_section_register(section)
