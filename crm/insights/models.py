"""Marketing figures the KPI page reads (spend per channel and month, e-mail campaign results), saved
segments and the record of every export of a segment. None of them holds a customer's personal data:
spend and campaign results are totals, a segment is a definition (its members are computed when asked), an
export keeps counts, column names and the anonymisation report, never the rows."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from crm.choices import CollectionChannel
from crm.fields import staff_reference
from crm.insights import field_classes  # noqa: F401  (declares the fields)
from crm.permissions import ROLE_PRIVACY, ROLE_STAFF
from crm.roles import grant_role_permissions

__all__ = ["CampaignResult", "MarketingSpend", "Segment", "SegmentExport"]


def first_of_month_validator(value: Any) -> None:
    if value is not None and value.day != 1:
        raise ValidationError(_("月の初日（1日）を指定してください。"))


class MarketingSpend(models.Model):
    """What was spent on acquiring customers through one channel in one month (yen): the numerator of CAC."""

    channel = models.CharField(_("チャネル"), max_length=20, choices=CollectionChannel.choices)
    month = models.DateField(_("月"), validators=[first_of_month_validator], help_text=_("月の初日"))
    amount = models.DecimalField(
        _("費用（円）"), max_digits=14, decimal_places=0, validators=[MinValueValidator(0)]
    )
    note = models.CharField(_("備考"), max_length=200, blank=True)
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    class Meta:
        verbose_name = _("マーケティング費用")
        verbose_name_plural = _("マーケティング費用")
        ordering = ["-month", "channel"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "month"], name="uniq_marketing_spend_channel_month")
        ]
        permissions = [("view_kpi", _("KPIページを閲覧できる"))]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.channel}"


class CampaignResult(models.Model):
    """The totals of one e-mail campaign as the mailing service reports them (sent, delivered, opened,
    clicked): the open and click rates of the KPI page. Counts only; who opened is not imported."""

    campaign_code = models.SlugField(_("キャンペーンコード"), max_length=60, unique=True)
    name = models.CharField(_("名称"), max_length=200, blank=True)
    sent_on = models.DateField(_("配信日"))
    sent = models.PositiveIntegerField(_("配信数"))
    delivered = models.PositiveIntegerField(_("到達数"))
    opened = models.PositiveIntegerField(_("開封数"))
    clicked = models.PositiveIntegerField(_("クリック数"))
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    class Meta:
        verbose_name = _("メール配信結果")
        verbose_name_plural = _("メール配信結果")
        ordering = ["-sent_on", "campaign_code"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(delivered__lte=models.F("sent"))
                & models.Q(opened__lte=models.F("delivered"))
                & models.Q(clicked__lte=models.F("delivered")),
                name="campaignresult_counts_consistent",
            )
        ]

    def __str__(self) -> str:
        return self.campaign_code

    def clean(self) -> None:
        if None in (self.sent, self.delivered, self.opened, self.clicked):
            return
        if not (
            self.delivered <= self.sent and self.opened <= self.delivered and self.clicked <= self.delivered
        ):
            raise ValidationError(
                _("到達数は配信数以下、開封数・クリック数は到達数以下でなければなりません。")
            )


class Segment(models.Model):
    """A saved selection of customers: filters over attributes and behaviour (crm.insights.rules.
    SegmentFilters says which). Its members are computed when asked, among the customers the asking user may
    see (restrict), so one segment shows each team its own customers."""

    name = models.CharField(_("名称"), max_length=100)
    description = models.TextField(_("説明"), blank=True)
    filters = models.JSONField(_("条件"), default=dict, blank=True)
    created_by = staff_reference(_("作成者"))
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    class Meta:
        verbose_name = _("セグメント")
        verbose_name_plural = _("セグメント")
        ordering = ["name"]
        permissions = [("export_segment", _("セグメントを出力できる"))]

    def __str__(self) -> str:
        return self.name


class SegmentExport(models.Model):
    """One export of a segment: for which purpose, to where, how many rows and which columns, and for an
    anonymised data set (匿名加工情報, APPI Art. 43) the k-anonymity report and when its items were published
    (Art. 43(3)). The rows themselves are streamed to the requester and never stored."""

    class Kind(models.TextChoices):
        PERSONAL = "personal", _("個人データ（利用目的の範囲）")
        ANONYMISED = "anonymised", _("匿名加工情報（法第43条）")

    class Destination(models.TextChoices):
        INTERNAL = "internal", _("社内でのダウンロード")
        RECIPIENT = "recipient", _("第三者（提供先）")

    segment = models.ForeignKey(
        Segment, on_delete=models.PROTECT, related_name="exports", verbose_name=_("セグメント")
    )
    kind = models.CharField(_("種類"), max_length=12, choices=Kind.choices)
    purpose_code = models.SlugField(_("利用目的"), max_length=50)
    destination = models.CharField(
        _("出力先"), max_length=12, choices=Destination.choices, default=Destination.INTERNAL
    )
    recipient_ref = models.CharField(_("提供先"), max_length=64, blank=True)
    columns = models.JSONField(_("項目"), default=list)
    row_count = models.PositiveIntegerField(_("件数"), default=0)
    report = models.JSONField(_("匿名加工の報告"), default=dict, blank=True)
    items_published_at = models.DateTimeField(
        _("項目の公表日時（法第43条第3項）"), null=True, blank=True, editable=False
    )
    items_published_url = models.URLField(_("公表先"), blank=True, editable=False)
    created_by = staff_reference(_("出力者"), optional=False)
    created_at = models.DateTimeField(_("出力日時"), auto_now_add=True)

    class Meta:
        verbose_name = _("セグメント出力記録")
        verbose_name_plural = _("セグメント出力記録")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"出力 #{self.pk}"


def _register() -> None:
    """Classification, role permissions and audit registration of this area (as crm.retention.models does:
    crm.models imports this module while the app registry loads)."""
    from auditlog.registry import auditlog

    # The privacy officer watches the KPI page (consent rates, data quality) and keeps the marketing figures;
    # staff build segments and export their own teams' customers within a purpose (the gate decides whose).
    grant_role_permissions(
        ROLE_PRIVACY,
        [
            "crm.view_kpi",
            "crm.view_marketingspend",
            "crm.add_marketingspend",
            "crm.change_marketingspend",
            "crm.view_campaignresult",
            "crm.add_campaignresult",
            "crm.change_campaignresult",
            "crm.view_segment",
            "crm.view_segmentexport",
            "crm.change_segmentexport",
        ],
    )
    grant_role_permissions(
        ROLE_STAFF,
        [
            "crm.view_segment",
            "crm.add_segment",
            "crm.change_segment",
            "crm.export_segment",
            "crm.view_segmentexport",
        ],
    )
    for model in (MarketingSpend, CampaignResult, Segment, SegmentExport):
        if not auditlog.contains(model):
            auditlog.register(model)
    # The demo seeder (crm.insights.demo) is registered by crm's AppConfig.ready(): it uses the services,
    # which import these models.


_register()
