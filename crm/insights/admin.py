"""Admin pages of the insights (registered at app loading, crm.apps): the KPI page, marketing spend and
campaign results with their CSV imports, saved segments with their live count and exports, and the export
records. Presentation only: writes go through crm.insights.services, reads through crm.insights.selectors."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm.admin.mixins import ReadOnlyAdminMixin, admin_page
from crm.analytics.models import RfmScore
from crm.audit.actors import request_user
from crm.insights import hooks, rules, selectors, services
from crm.insights.models import CampaignResult, MarketingSpend, Segment, SegmentExport
from crm.models import Customer, CustomerEvent
from crm.permissions import can_view_pii
from crm.prefectures import PREFECTURE_CODES
from crm.selectors import viewable_team_choices

_viewer: ContextVar[Any] = ContextVar("insights_segment_viewer", default=None)


class CsvImportForm(forms.Form):
    file = forms.FileField(label=_("CSVファイル（UTF-8）"))


class _CsvImportAdmin(admin.ModelAdmin):
    """An admin whose changelist offers a CSV import (all or nothing, errors by line number)."""

    change_list_template = "admin/insights/change_list_import.html"
    import_help: Any = ""

    def import_rows(self, data: bytes, request: HttpRequest) -> tuple[int, services.ImportErrors]:
        raise NotImplementedError

    def get_urls(self) -> list[Any]:
        opts = self.model._meta
        own = [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name=f"{opts.app_label}_{opts.model_name}_import",
            )
        ]
        return own + super().get_urls()

    def import_view(self, request: HttpRequest) -> Any:
        if not self.has_add_permission(request) or not self.has_change_permission(request):
            raise PermissionDenied
        form = CsvImportForm(request.POST or None, request.FILES or None)
        errors: services.ImportErrors = []
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                count, errors = self.import_rows(upload.read(services.MAX_IMPORT_BYTES + 1), request)
            except ValidationError as exc:
                form.add_error("file", exc)
            else:
                if not errors:
                    self.message_user(request, gettext("%(count)d 行を取り込みました。") % {"count": count})
                    return HttpResponseRedirect(
                        reverse(
                            f"admin:{self.model._meta.app_label}_{self.model._meta.model_name}_changelist"
                        )
                    )
        return admin_page(
            self,
            request,
            "admin/insights/import.html",
            gettext("CSVから取り込む"),
            form=form,
            errors=errors,
            help=self.import_help,
        )


@admin.register(MarketingSpend)
class MarketingSpendAdmin(_CsvImportAdmin):
    """Spend per channel and month (CAC's numerator); the KPI page hangs off this admin."""

    list_display = ("month", "channel", "amount", "note")
    list_filter = ("channel",)
    import_help = _("列: month（YYYY-MM）, channel, amount（円）, note（任意）")

    def import_rows(self, data: bytes, request: HttpRequest) -> tuple[int, services.ImportErrors]:
        return services.marketing_spend_import(data=data, actor=request_user(request))

    def get_urls(self) -> list[Any]:
        kpi = [path("kpi/", self.admin_site.admin_view(self.kpi_view), name="crm_kpi")]
        return kpi + super().get_urls()

    def kpi_view(self, request: HttpRequest) -> Any:
        """The KPI page: twelve months of every indicator as charts (static/insights/kpi.js draws them from
        the json_script data: no inline script under the CSP)."""
        if not request.user.has_perm("crm.view_kpi"):
            raise PermissionDenied
        if request.method == "POST":
            # 「再計算する」 takes seconds at a million customers: a worker computes, the page reads the cache
            services.kpi_cache_refresh_enqueue()
            self.message_user(request, gettext("再計算を開始しました。数分後に再読み込みしてください。"))
            return HttpResponseRedirect(reverse("admin:crm_kpi"))
        months = rules.months_back(timezone.localdate(), services.KPI_MONTHS)
        # From the cache, kept warm by the nightly task; a cold cache (first use) is computed here once.
        data = selectors.kpi_chart_data(months=months)
        data["labels"] = {
            "cac": gettext("顧客獲得単価（CAC、円）"),
            "ltv": gettext("顧客生涯価値（LTV：顧客1人当たり累計売上、円）"),
            "repeat": gettext("リピート率（%）"),
            "churn": gettext("解約率（%）"),
            "open_rate": gettext("メール開封率（%）"),
            "click_rate": gettext("メールクリック率（%）"),
            "completeness": gettext("入力充足率（%）"),
            "duplicates": gettext("重複率（メールの一致、%）"),
            "freshness": gettext("鮮度（1年以内に利用、%）"),
            "new_customers": gettext("新規顧客数"),
            "spend": gettext("マーケティング費用（円）"),
        }
        return admin_page(
            self,
            request,
            "admin/insights/kpi.html",
            gettext("KPI（月次）"),
            kpi=data,
            charts=[
                ("acquisition", gettext("獲得と価値"), ["cac", "ltv"]),
                ("retention", gettext("継続"), ["repeat", "churn"]),
                ("email", gettext("メール"), ["open_rate", "click_rate"]),
                ("quality", gettext("データ品質（取得月別）"), ["completeness", "duplicates", "freshness"]),
            ],
            extra=data["extra"],
        )


@admin.register(CampaignResult)
class CampaignResultAdmin(_CsvImportAdmin):
    """Campaign totals imported from the mailing service (open and click rates)."""

    list_display = ("campaign_code", "name", "sent_on", "sent", "delivered", "opened", "clicked")
    import_help = _(
        "列: campaign_code, sent_on（YYYY-MM-DD）, sent, delivered, opened, clicked, name（任意）"
    )

    def import_rows(self, data: bytes, request: HttpRequest) -> tuple[int, services.ImportErrors]:
        return services.campaign_results_import(data=data, actor=request_user(request))


class SegmentForm(forms.ModelForm):
    """The filters as fields (never raw JSON); saved into Segment.filters by segment_save."""

    prefectures = forms.MultipleChoiceField(
        label=_("都道府県"), required=False, choices=[(c, _(n)) for n, c in PREFECTURE_CODES.items()]
    )
    teams = forms.TypedMultipleChoiceField(label=_("担当チーム"), required=False, coerce=int, choices=[])
    statuses = forms.MultipleChoiceField(label=_("状態"), required=False, choices=Customer.Status.choices)
    channels = forms.MultipleChoiceField(
        label=_("取得チャネル"), required=False, choices=Customer.Channel.choices
    )
    genders = forms.MultipleChoiceField(
        label=_("性別"), required=False, choices=[c for c in Customer.Gender.choices if c[0]]
    )
    min_purchases = forms.IntegerField(
        label=_("購買回数（以上）"), required=False, min_value=0, max_value=rules.MAX_INT
    )
    max_purchases = forms.IntegerField(
        label=_("購買回数（以下）"), required=False, min_value=0, max_value=rules.MAX_INT
    )
    min_amount = forms.IntegerField(
        label=_("累計購買金額（円以上）"), required=False, min_value=0, max_value=rules.MAX_INT
    )
    purchased_within_days = forms.IntegerField(
        label=_("直近N日以内に購買あり"), required=False, min_value=0, max_value=36500
    )
    not_purchased_within_days = forms.IntegerField(
        label=_("直近N日間購買なし"), required=False, min_value=0, max_value=36500
    )
    event_kind = forms.ChoiceField(
        label=_("行動イベントの種類"), required=False, choices=[("", "-"), *CustomerEvent.Kind.choices]
    )
    min_events = forms.IntegerField(
        label=_("行動イベント数（以上）"), required=False, min_value=0, max_value=rules.MAX_INT
    )
    events_within_days = forms.IntegerField(
        label=_("行動イベントの期間（直近N日）"), required=False, min_value=0, max_value=36500
    )

    rfm_segments = forms.MultipleChoiceField(
        label=_("RFMセグメント（最新の計算）"), required=False, choices=RfmScore.Segment.choices
    )
    min_clv = forms.IntegerField(
        label=_("予測CLV（円以上、最新の推定）"), required=False, min_value=0, max_value=rules.MAX_INT
    )
    min_p_alive_pct = forms.IntegerField(
        label=_("継続確率 P(alive)（%以上）"), required=False, min_value=0, max_value=100
    )
    max_p_alive_pct = forms.IntegerField(
        label=_("継続確率 P(alive)（%以下）"), required=False, min_value=0, max_value=100
    )

    FILTER_FIELDS = (*rules.LIST_FILTERS, *rules.INT_FILTERS, *rules.STR_FILTERS)

    class Meta:
        model = Segment
        fields = ["name", "description"]

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        teams = cast(forms.ChoiceField, self.fields["teams"])
        teams.choices = viewable_team_choices(user) if user is not None else []
        for key, value in (self.instance.filters or {}).items():
            if key in self.fields:
                self.fields[key].initial = value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        filters: dict[str, Any] = {}
        for key in self.FILTER_FIELDS:
            value = data.get(key)
            if value in (None, "", []):
                continue
            filters[key] = list(value) if isinstance(value, list | tuple) else value
        try:
            self.instance.filters = rules.SegmentFilters.parse(filters).as_json()
        except rules.SegmentFilterError as exc:
            raise ValidationError(gettext("条件「%(key)s」が不正です。") % {"key": str(exc)}) from exc
        return data


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    """Saved segments: filters, the live count among the customers the viewer may see, and exports."""

    form = SegmentForm
    list_display = ("name", "description", "created_at", "export_link")
    readonly_fields = ("member_count", "created_by", "created_at", "updated_at")
    fieldsets = [
        (None, {"fields": ["name", "description", "member_count"]}),
        (_("属性"), {"fields": ["prefectures", "teams", "statuses", "channels", "genders"]}),
        (
            _("行動"),
            {
                "fields": [
                    "min_purchases",
                    "max_purchases",
                    "min_amount",
                    "purchased_within_days",
                    "not_purchased_within_days",
                    "event_kind",
                    "min_events",
                    "events_within_days",
                ]
            },
        ),
        (_("スコア（分析）"), {"fields": ["rfm_segments", "min_clv", "min_p_alive_pct", "max_p_alive_pct"]}),
        (_("管理情報"), {"fields": ["created_by", "created_at", "updated_at"]}),
    ]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)

        # Made at run time from the form class Django built: the checker cannot follow a variable base.
        class WithUser(form):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, user=request.user, **kw)

        return WithUser

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        # The count is the viewer's (restrict): kept in a ContextVar while the page renders, never on the
        # shared admin instance (crm.retention.admin does the same for its dry run).
        token = _viewer.set(request.user)
        try:
            response = super().change_view(request, object_id, form_url, extra_context)
            if hasattr(response, "render"):
                response.render()
            return response
        finally:
            _viewer.reset(token)

    @admin.display(description=_("対象者数（閲覧できる顧客のうち）"))
    def member_count(self, obj: Segment) -> str:
        user = _viewer.get()
        if obj is None or not obj.pk or user is None:
            return "-"
        count, exact = selectors.segment_count(user=user, segment=obj)
        return f"{count:,}" if exact else gettext("約 %(count)s（推定）") % {"count": f"{count:,}"}

    @admin.display(description=_("出力"))
    def export_link(self, obj: Segment) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:crm_segment_export", args=[obj.pk]), gettext("出力")
        )

    def save_model(self, request: HttpRequest, obj: Segment, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request_user(request)
        services.segment_save(segment=obj, actor=request_user(request))

    def get_urls(self) -> list[Any]:
        own = [
            path(
                "<int:segment_id>/export/",
                self.admin_site.admin_view(self.export_view),
                name="crm_segment_export",
            )
        ]
        return own + super().get_urls()

    def export_view(self, request: HttpRequest, segment_id: int) -> Any:
        """Choose the purpose and the kind, then download the CSV (streamed)."""
        if not (request.user.has_perm("crm.export_segment") and request.user.has_perm("crm.view_segment")):
            raise PermissionDenied
        segment = get_object_or_404(Segment, pk=segment_id)
        form = SegmentExportForm(request.POST or None, user=request.user)
        if request.method == "POST" and form.is_valid():
            try:
                return self._export(request, segment, form.cleaned_data)
            except ValidationError as exc:
                form.add_error(None, exc)
        return admin_page(
            self,
            request,
            "admin/insights/export.html",
            gettext("セグメント「%(name)s」の出力") % {"name": segment.name},
            form=form,
            segment=segment,
        )

    def _export(self, request: HttpRequest, segment: Segment, data: dict[str, Any]) -> StreamingHttpResponse:
        user = request_user(request)
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
        if data["kind"] == SegmentExport.Kind.ANONYMISED:
            _export, rows = services.segment_export_anonymised(user=user, segment=segment, k=data["k"])
            name = f"anonymised-segment-{segment.pk}-{stamp}.csv"
            return _csv_response(rows, name)
        recipient = data.get("recipient") or ""
        _export, lazy_rows = services.segment_export_personal(
            user=user,
            segment=segment,
            purpose_code=data["purpose_code"],
            destination=SegmentExport.Destination.RECIPIENT
            if recipient
            else SegmentExport.Destination.INTERNAL,
            recipient_ref=recipient,
            provision_basis=data.get("provision_basis") or "",
            opt_out_notified_on=data.get("opt_out_notified_on"),
        )
        to = f"-to-{recipient}" if recipient else ""
        return _csv_response(lazy_rows, f"segment-{segment.pk}-{data['purpose_code']}{to}-{stamp}.csv")


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_response(rows: Iterable[list[str]], filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield "\ufeff"  # a BOM: spreadsheet software then reads the Japanese as UTF-8
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


class SegmentExportForm(forms.Form):
    """The kind and purpose of an export and, for personal data, optionally the recipient it goes to: the
    recipients and bases are consent's (hooks.recipients: only those the user may provide to); the provision
    record is written before the file (services.segment_export_personal)."""

    kind = forms.ChoiceField(label=_("種類"), choices=SegmentExport.Kind.choices)
    purpose_code = forms.ChoiceField(label=_("利用目的"), choices=[], required=False)
    k = forms.IntegerField(label=_("k（匿名加工情報の最小組数）"), min_value=2, max_value=1000, initial=5)
    recipient = forms.ChoiceField(
        label=_("提供先（第三者提供・委託・共同利用）"),
        choices=[],
        required=False,
        help_text=_("選ぶと、出力の前に第三者提供記録（法第29条）を作成します。社内で使う場合は空欄。"),
    )
    provision_basis = forms.ChoiceField(label=_("提供の根拠"), choices=[], required=False)
    opt_out_notified_on = forms.DateField(
        label=_("個人情報保護委員会への届出日（オプトアウトの場合）"), required=False
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        fields: dict[str, Any] = self.fields
        fields["purpose_code"].choices = [("", "-"), *hooks.purposes()]
        # Only someone who sees clear values may provide them (services.segment_export_personal refuses
        # the others): the masked see the internal download alone.
        recipients = hooks.recipients(user) if can_view_pii(user) else []
        fields["recipient"].choices = [("", gettext("社内でのダウンロード")), *recipients]
        fields["provision_basis"].choices = [
            ("", gettext("提供先の区分から（委託先→委託、共同利用→共同利用、第三者→本人の同意）")),
            *hooks.provision_bases(),
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("kind") == SegmentExport.Kind.PERSONAL and not data.get("purpose_code"):
            self.add_error("purpose_code", gettext("個人データの出力には利用目的が必要です。"))
        if data.get("recipient") and data.get("kind") != SegmentExport.Kind.PERSONAL:
            self.add_error("recipient", gettext("提供先へ出力できるのは個人データの出力だけです。"))
        if data.get("provision_basis") == "opt_out" and not data.get("opt_out_notified_on"):
            self.add_error(
                "opt_out_notified_on", gettext("オプトアウトによる提供には届出日が必要です（法第27条2項）。")
            )
        return data


class PublishItemsForm(forms.Form):
    url = forms.URLField(label=_("公表したページのURL"), max_length=200, assume_scheme="https")


@admin.register(SegmentExport)
class SegmentExportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every export: who, which segment, purpose, how many, which columns; for an anonymised data set the
    k-anonymity report and the record of the items' publication (APPI Art. 43(3))."""

    list_display = (
        "__str__",
        "segment",
        "kind",
        "purpose_code",
        "destination",
        "recipient_ref",
        "row_count",
        "created_by",
        "created_at",
        "published",
    )
    list_filter = ("kind", "destination")

    @admin.display(description=_("項目の公表（法第43条第3項）"))
    def published(self, obj: SegmentExport) -> str:
        if obj.kind != SegmentExport.Kind.ANONYMISED:
            return "-"
        if obj.items_published_at:
            return timezone.localtime(obj.items_published_at).strftime("%Y-%m-%d %H:%M")
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:crm_segmentexport_publish", args=[obj.pk]),
            gettext("公表を記録"),
        )

    def get_urls(self) -> list[Any]:
        own = [
            path(
                "<int:export_id>/publish/",
                self.admin_site.admin_view(self.publish_view),
                name="crm_segmentexport_publish",
            )
        ]
        return own + super().get_urls()

    def publish_view(self, request: HttpRequest, export_id: int) -> Any:
        if not request.user.has_perm("crm.change_segmentexport"):
            raise PermissionDenied
        export = get_object_or_404(SegmentExport, pk=export_id)
        form = PublishItemsForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.anonymised_items_published(
                    export=export, url=form.cleaned_data["url"], actor=request_user(request)
                )
            except ValidationError as exc:
                self.message_user(request, "; ".join(exc.messages), messages.WARNING)
            else:
                self.message_user(request, gettext("項目の公表を記録しました。"))
            return HttpResponseRedirect(reverse("admin:crm_segmentexport_changelist"))
        return admin_page(
            self,
            request,
            "admin/insights/publish.html",
            gettext("匿名加工情報の項目の公表を記録（法第43条第3項）"),
            form=form,
            export=export,
        )
