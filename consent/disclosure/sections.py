"""What the consent app holds about a customer, registered with crm's disclosure registry
(crm.disclosure.registry): the purposes of use (published texts, and every version the person was shown),
the consent ledger, the current consent states, 要配慮 records, objections, linked visitor ids, and the
third-party provision and receipt records that name the person (APPI 33(5): 第三者提供記録の開示)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.db.models import BooleanField, ExpressionWrapper, F, Q
from django.utils.translation import gettext_lazy as _

from consent.models import ConsentEvent, LegalBasis, Purpose, PurposeVersion
from crm.disclosure import Column, ModelSection, SectionContext, disclosure_section_register
from crm.disclosure.registry import BOOL, NUMBER


class PurposesSection:
    """The purposes of use (利用目的, APPI Art. 32(1); GDPR Art. 15(1)(a)) in the requester's language: the
    current text of every published purpose, and each earlier version the person was shown when consenting
    (what their ledger rows refer to). One query."""

    key = "consent.purposes"
    title = _("利用目的（公表している文面）")
    about_person = False

    def columns(self, ctx: SectionContext) -> list[Column]:
        return [
            Column("code", _("コード")),
            Column("version", _("版"), kind=NUMBER),
            Column("title", _("名称")),
            Column("description", _("説明")),
            Column("legal_basis", _("法的根拠"), choices=tuple(LegalBasis.choices)),
            Column("current", _("現行版"), kind=BOOL),
            Column("published", _("公表中"), kind=BOOL),
        ]

    def rows(self, ctx: SectionContext) -> Iterator[Sequence[Any]]:
        shown = Q(pk__in=Purpose.objects.filter(is_published=True).values("current_version"))
        if ctx.customer_id is not None:
            seen = ConsentEvent.objects.filter(customer_id=ctx.customer_id).values("purpose_version")
            shown |= Q(pk__in=seen)
        suffix = "en" if ctx.language == "en" else "ja"
        current = ExpressionWrapper(Q(purpose__current_version=F("pk")), output_field=BooleanField())
        versions = (
            PurposeVersion.objects.filter(shown)
            .annotate(is_current=current)
            .order_by("purpose__display_order", "purpose__code", "-version")
            .values_list(
                "purpose__code",
                "version",
                f"title_{suffix}",
                f"description_{suffix}",
                "legal_basis",
                "is_current",
                "purpose__is_published",
            )
        )
        return versions.iterator()


def register() -> None:
    """consent's sections (consent.apps.ConsentConfig.ready)."""
    for section in (
        PurposesSection(),
        ModelSection(
            "consent.ledger",
            _("同意台帳（同意・撤回の記録）"),
            "consent.ConsentEvent",
            context=("id", "purpose__code", "purpose_version__version", "recorded_at", "erased_at"),
            order_by=("occurred_at", "pk"),
        ),
        ModelSection(
            "consent.states",
            _("同意状態（現在）"),
            "consent.ConsentState",
            context=("purpose__code", "version"),
            order_by=("purpose__display_order", "purpose__code"),
        ),
        ModelSection(
            "consent.special_care",
            _("要配慮個人情報"),
            "consent.SpecialCareRecord",
            context=("id", "purpose__code", "created_at"),
        ),
        ModelSection(
            "consent.objections",
            _("異議（GDPR第21条）"),
            "consent.Objection",
            context=("id", "purpose__code", "answers", "recorded_at"),
            order_by=("occurred_at", "pk"),
        ),
        ModelSection(
            "consent.requests",
            _("開示等請求（お客様からのご請求）"),
            "consent.DataSubjectRequest",
            context=("id", "kind", "channel", "received_at", "state", "closed_at"),
            order_by=("received_at", "pk"),
        ),
        # APPI 33(5): the records of provision to third parties (法第29条) and of receipt from them (法第30条)
        # that name the person, read through their links (ProvisionSubject / ReceiptSubject).
        ModelSection(
            "consent.provisions",
            _("第三者提供の記録（法第29条、第33条5項）"),
            "consent.ProvisionRecord",
            context=(
                "id",
                "recipient__name",
                "recipient__country",
                "basis",
                "data_items",
                "first_provided_on",
                "last_provided_on",
                "provisions",
                "keep_until",
            ),
            customer="subjects__customer",
            order_by=("first_provided_on", "pk"),
        ),
        ModelSection(
            "consent.receipts",
            _("第三者からの受領の記録（法第30条、第33条5項）"),
            "consent.ReceiptRecord",
            context=(
                "id",
                "provider_name",
                "provider_address",
                "data_items",
                "received_on",
                "basis",
                "keep_until",
            ),
            customer="subjects__customer",
            order_by=("received_on", "pk"),
        ),
        ModelSection(
            "consent.visitor_links",
            _("訪問者IDの紐付け"),
            "consent.VisitorLink",
            context=("linked_at",),
        ),
    ):
        disclosure_section_register(section)
