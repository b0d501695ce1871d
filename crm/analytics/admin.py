"""Admin pages of the analytics (registered at app loading, crm.apps): purchase import (upload, progress,
refused lines), read-only score lists with their explanations, the cross-sell and fairness reports.

Presentation only: the upload goes through crm.analytics.services, every read through the gate
(crm.analytics.selectors). Scores are personal data (profiling): masked like the rest of the admin for users
without 「個人データをマスクなしで閲覧」, and every list page and record opened is written to the access log.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, cast

from django import forms
from django.apps import apps
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm.admin.mixins import (
    AccessLoggedAdminMixin,
    NoEditAdminMixin,
    ReadOnlyAdminMixin,
    ScaleSafeAdmin,
    admin_page,
)
from crm.analytics import rules, selectors, services
from crm.analytics.eligibility import eligible_customers
from crm.analytics.models import ClvScore, PurchaseImport, RfmScore
from crm.audit.actors import request_user
from crm.classification import mask_value
from crm.permissions import can_view_pii, teams_open_to
from crm.prefectures import prefecture_name

# The request whose page is being rendered (explanations and suggestions are read for its user). A
# ContextVar, not an attribute of the shared ModelAdmin, so concurrent requests never mix.
_viewer: ContextVar[HttpRequest | None] = ContextVar("analytics_admin_viewer", default=None)


class PurchaseImportForm(forms.ModelForm):
    """The upload: a team the user may create customers in, the file, and all-or-nothing."""

    upload = forms.FileField(
        label=_("購買CSVファイル"),
        help_text=_(
            "1行目は見出し: external_id,purchased_at,amount（任意で quantity,category,channel）。"
            "日時にタイムゾーンがなければ日本時間として扱います。"
        ),
    )

    class Meta:
        model = PurchaseImport
        fields = ["team", "all_or_nothing"]


# An import's state and counts, on the list and on the batch's page.
_IMPORT_PROGRESS = (
    "status",
    "progress",
    "rows_total",
    "rows_inserted",
    "rows_duplicate",
    "rows_invalid",
    "customers_created",
)


@admin.register(PurchaseImport)
class PurchaseImportAdmin(NoEditAdminMixin, admin.ModelAdmin):
    """Import batches: upload a file (the import runs in a Celery task), then watch its progress and read
    the refused lines (line numbers and reasons, never values)."""

    form = PurchaseImportForm
    list_display = ("__str__", "team", *_IMPORT_PROGRESS, "created_at")
    list_filter = ("status",)
    readonly_fields = ("progress", "refused_lines")

    def get_queryset(self, request: HttpRequest) -> QuerySet[PurchaseImport]:
        return PurchaseImport.objects.restrict(request_user(request), "view").select_related("team")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["team", "upload", "all_or_nothing"]
        return [
            "team",
            "file_name",
            "all_or_nothing",
            *_IMPORT_PROGRESS,
            "refused_lines",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return self.get_fields(request, obj)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None:
            team_field = cast(forms.ModelChoiceField, form.base_fields["team"])
            team_field.queryset = teams_open_to(request_user(request), "change")
        return form

    def save_model(self, request: HttpRequest, obj: PurchaseImport, form: Any, change: bool) -> None:
        batch = services.purchase_import_create(
            team=form.cleaned_data["team"],
            upload=form.cleaned_data["upload"],
            all_or_nothing=form.cleaned_data["all_or_nothing"],
            actor=request_user(request),
        )
        obj.pk = batch.pk
        obj.created_at = batch.created_at

    @admin.display(description=_("進捗"))
    def progress(self, obj: PurchaseImport) -> str:
        if obj.status in (PurchaseImport.Status.DONE, PurchaseImport.Status.REFUSED):
            return "100%"
        if not obj.bytes_total:
            return "-"
        return f"{min(100, obj.bytes_read * 100 // obj.bytes_total)}%"

    @admin.display(description=_("誤りのある行"))
    def refused_lines(self, obj: PurchaseImport) -> str:
        if not obj.errors:
            return "-"
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>",
            gettext("行"),
            gettext("項目"),
            gettext("理由"),
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                ((e["line"], e["field"] or "-", error_label(e["code"])) for e in obj.errors),
            ),
        )


ERROR_LABELS = {
    "required": _("必須です"),
    "too_long": _("長すぎます"),
    "my_number": _("個人番号（マイナンバー）と思われる値は登録できません"),
    "invalid_datetime": _("日付・日時として読めません"),
    "invalid_amount": _("金額として読めません"),
    "invalid_quantity": _("数量は1以上の整数です"),
    "invalid_choice": _("選択肢にない値です"),
    "columns": _("列の数が見出しと違います"),
    "encoding": _("UTF-8 として読めません"),
    "missing_column": _("必須の列がありません"),
    "unknown_column": _("不明な列です"),
    "repeated_column": _("同じ列が2回あります"),
}


def error_label(code: str) -> str:
    return str(ERROR_LABELS.get(code, code))


def _shown(label: str, name: str, pii: bool) -> Callable[[Any], Any]:
    """A list column of a score's field: the value, or its mask for a user without the PII permission."""

    def show(obj: Any) -> Any:
        value = getattr(obj, name)
        return value if pii else mask_value(label, name, value)

    show.__name__ = f"col_{name}"
    return admin.display(description=obj_field_label(label, name))(show)


def obj_field_label(label: str, name: str) -> Any:
    return apps.get_model(label)._meta.get_field(name).verbose_name


class ScoreAdmin(AccessLoggedAdminMixin, ReadOnlyAdminMixin, ScaleSafeAdmin):
    """Read-only scores of the newest run or fit, behind the gate, masked without the PII permission."""

    columns: tuple[str, ...] = ()
    list_select_related = ("customer",)

    def get_list_display(self, request: HttpRequest) -> Any:
        pii = can_view_pii(request_user(request))
        label = self.model._meta.label
        return ("__str__", "customer_ref", *(_shown(label, name, pii) for name in self.columns))

    @admin.display(description=_("顧客"))
    def customer_ref(self, obj: Any) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:crm_customer_change", args=[obj.customer_id]), obj.customer
        )

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> Any:
        token = _viewer.set(request)
        try:
            response = super().changeform_view(request, object_id, form_url, extra_context)
            if isinstance(response, TemplateResponse):
                response.render()  # while the viewer is known: the explanation fields read it
            return response
        finally:
            _viewer.reset(token)

    @staticmethod
    def viewer_pii() -> bool:
        request = _viewer.get()
        return request is not None and can_view_pii(request_user(request))

    def report_view(self, request: HttpRequest, kind: str) -> HttpResponse:
        """The fairness report of this kind of score (admin/crm/analytics_report.html)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        user = request_user(request)
        if not can_view_pii(user):
            raise PermissionDenied  # group means of personal scores: those who see the scores in clear
        gaps = selectors.fairness_report(user=user, kind=kind)
        rows = [
            {
                "dimension": gettext("都道府県") if g.dimension == "prefecture" else gettext("年代"),
                "group": prefecture_name(g.group) if g.dimension == "prefecture" else g.group,
                "measure": obj_field_label(self.model._meta.label, g.measure),
                "customers": g.customers,
                "mean": round(g.mean, 3),
                "smd": round(g.smd, 3),
                "flagged": g.flagged,
            }
            for g in gaps
        ]
        return admin_page(
            self,
            request,
            "admin/crm/analytics_fairness.html",
            gettext("スコア分布の公平性レポート（%(name)s）") % {"name": self.model._meta.verbose_name},
            rows=rows,
            threshold=rules.FAIRNESS_SMD_THRESHOLD,
            min_group=rules.FAIRNESS_MIN_GROUP,
        )


@admin.register(RfmScore)
class RfmScoreAdmin(ScoreAdmin):
    """RFM scores of the newest run: values beside scores, the segment; explanation and cross-sell on the
    record's page; the fairness and cross-sell reports."""

    columns = ("recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "segment")
    list_filter = ("segment",)
    fields = ("customer_ref", "run", "explanation", "segment_display", "suggestions")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[RfmScore]:
        return selectors.rfm_scores_for(request_user(request)).select_related("customer", "run")

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("fairness/", view(lambda r: self.report_view(r, "rfm")), name="crm_rfmscore_fairness"),
            path("crosssell/", view(self.crosssell_view), name="crm_rfmscore_crosssell"),
            *super().get_urls(),
        ]

    @admin.display(description=_("スコアの根拠（値と、この計算で各スコアになった値の範囲）"))
    def explanation(self, obj: RfmScore) -> str:
        if not self.viewer_pii():
            return "***"
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>",
            gettext("指標"),
            gettext("値"),
            gettext("スコア"),
            gettext("スコアごとの値の範囲"),
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td></tr>",
                (
                    (
                        str(item["label"]),
                        item["value"],
                        item["score"],
                        item["bins"],
                        "; ".join(f"{s}: {lo}〜{hi}" for s, (lo, hi) in item["ranges"]),
                    )
                    for item in selectors.rfm_explanation(obj)
                ),
            ),
        )

    @admin.display(description=_("セグメント"))
    def segment_display(self, obj: RfmScore) -> str:
        return str(obj.get_segment_display()) if self.viewer_pii() else "***"

    @admin.display(description=_("クロスセルの提案（カテゴリ）"))
    def suggestions(self, obj: RfmScore) -> str:
        request = _viewer.get()
        if request is None or not self.viewer_pii():
            return "***"
        found = selectors.crosssell_for_customer(
            user=request_user(request), eligible=eligible_customers(), customer_id=obj.customer_id
        )
        if not found:
            return "-"
        return format_html_join(
            "",
            "<div>{} → {}（{} {:.2f}, {} {:.2f}, {} {:.2f}）</div>",
            (
                (
                    r.antecedent,
                    r.consequent,
                    gettext("支持度"),
                    r.support,
                    gettext("確信度"),
                    r.confidence,
                    gettext("リフト"),
                    r.lift,
                )
                for r in found
            ),
        )

    def crosssell_view(self, request: HttpRequest) -> HttpResponse:
        """Category co-purchase rules with support, confidence and lift (aggregates over the customers the
        user may see and the analytics purpose may use)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        found = selectors.crosssell_rules(user=request_user(request), eligible=eligible_customers())
        return admin_page(
            self,
            request,
            "admin/crm/analytics_crosssell.html",
            gettext("クロスセル分析（カテゴリの同時購買）"),
            rules=found,
        )


@admin.register(ClvScore)
class ClvScoreAdmin(ScoreAdmin):
    """CLV scores of the newest fit: inputs beside predictions; the components on the record's page."""

    columns = ("frequency", "recency", "age", "monetary", "expected_purchases", "p_alive", "clv")
    fields = ("customer_ref", "fit", "components")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ClvScore]:
        return selectors.clv_scores_for(request_user(request)).select_related("customer", "fit")

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("fairness/", view(lambda r: self.report_view(r, "clv")), name="crm_clvscore_fairness"),
            *super().get_urls(),
        ]

    @admin.display(description=_("CLVの構成要素"))
    def components(self, obj: ClvScore) -> str:
        if not self.viewer_pii():
            return "***"
        e = selectors.clv_explanation(obj)
        lines = [
            (
                gettext("入力（時間単位: %(unit)s）") % {"unit": e["unit"]},
                "x={x}, t_x={t_x:.2f}, T={T:.2f}, m={m}".format(**e["inputs"]),
            ),
            (
                gettext("BG/NBD パラメータ"),
                "r={r:.4g}, α={alpha:.4g}, a={a:.4g}, b={b:.4g}".format(**e["bgnbd"]),
            ),
            (gettext("予測購買回数（%(h)s 期間）") % {"h": e["horizon"]}, f"{e['expected_purchases']:.3f}"),
            (gettext("継続確率 P(alive)"), f"{e['p_alive']:.3f}"),
            (gettext("予測平均購買金額（Gamma-Gamma）"), str(e["expected_spend"])),
            (
                gettext("本人の平均金額の重み / 全体の平均金額"),
                "-"
                if e["own_mean_weight"] is None
                else f"{e['own_mean_weight']:.3f} / {e['population_mean_spend']:.0f}",
            ),
            (gettext("予測CLV（年率割引 %(d)s）") % {"d": e["discount_rate"]}, str(e["clv"])),
        ]
        return format_html(
            "<table><tbody>{}</tbody></table>",
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", lines),
        )
