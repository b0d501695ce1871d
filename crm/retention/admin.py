"""Admin pages of the retention engine (registered at app loading, crm.apps). Presentation only: writes go
through crm.retention.services, reads through crm.retention.selectors."""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm.admin.mixins import ReadOnlyAdminMixin
from crm.audit.actors import request_user
from crm.retention import selectors, services
from crm.retention.models import LegalHold, RetentionPolicy, RetentionRun, Tombstone

# The request whose page is being rendered: the dry run is computed for (and restricted to) its user.
# A ContextVar, not an attribute of the (shared) ModelAdmin instance, so concurrent requests never mix.
_viewer: ContextVar[HttpRequest | None] = ContextVar("retention_admin_viewer", default=None)


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    """Policies: edit, preview today's effect (dry run), start a run now."""

    list_display = ("name", "scope", "trigger", "days", "action", "enabled", "last_run")
    list_filter = ("enabled", "scope", "action")
    readonly_fields = ("dry_run", "created_at", "updated_at")
    fieldsets = [
        (None, {"fields": ["name", "enabled"]}),
        (_("対象と契機"), {"fields": ["scope", "trigger", "days", "consent_purpose"]}),
        (_("処理と法的根拠"), {"fields": ["action", "legal_basis", "batch_size"]}),
        (_("試行（ドライラン：本日実行した場合）"), {"fields": ["dry_run"]}),
        (_("管理情報"), {"fields": ["created_at", "updated_at"]}),
    ]
    actions = ["run_now"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Runs and tombstones refer to the policy: disable it instead.
        return False

    @admin.display(description=_("直近の実行"))
    def last_run(self, obj: RetentionPolicy) -> str:
        run = obj.runs.order_by("-started_at").first()
        if run is None:
            return "-"
        return f"{run.get_status_display()}（{timezone.localtime(run.started_at):%Y-%m-%d %H:%M}）"

    @admin.display(description=_("本日の対象"))
    def dry_run(self, obj: RetentionPolicy) -> Any:
        if obj is None or not obj.pk:
            return "-"
        request = _viewer.get()
        if request is None:
            return "-"
        preview = selectors.retention_preview(user=request.user, policy=obj, as_of=timezone.now())
        if preview.unavailable_reason:
            return preview.unavailable_reason
        head = format_html(
            "<p>{}</p>",
            format_html(
                gettext("処理対象: {} 人 ／ リーガルホールドにより除外: {} 人"),
                format_html("<strong>{}</strong>", preview.affected),
                format_html("<strong>{}</strong>", preview.held),
            ),
        )
        if not preview.sample:
            return head
        rows = format_html_join(
            "",
            "<tr><td>#{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    r["id"],
                    r["family_name"],
                    r["given_name"],
                    r["email"],
                    r["prefecture"],
                    r["last_activity_at"],
                )
                for r in preview.sample
            ),
        )
        columns = [gettext(c) for c in ("ID", "氏名", "メール", "都道府県", "最終利用")]
        return format_html(
            "{}<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table><p>{}</p>",
            head,
            format_html_join("", "<th>{}</th>", ((c,) for c in columns)),
            rows,
            gettext("（マスク表示の抜粋）"),
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        token = _viewer.set(request)
        try:
            response = super().change_view(request, object_id, form_url, extra_context)
            if hasattr(response, "render"):
                response.render()  # while the viewer is set: the dry run is computed during rendering
            return response
        finally:
            _viewer.reset(token)

    @admin.action(description=_("選択したポリシーを今すぐ実行する"), permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[RetentionPolicy]) -> None:
        for policy in queryset:
            try:
                run = services.retention_run_start(policy=policy, actor=request_user(request))
            except services.RetentionError as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                started = gettext("「%(policy)s」の実行 #%(run)s を開始しました。")
                self.message_user(request, started % {"policy": policy.name, "run": run.pk})

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("crm.run_retentionpolicy")


_IDS = re.compile(r"^[\d\s,、]+$")


class LegalHoldAddForm(forms.ModelForm):
    """Place one hold on one or more customers (ids separated by commas, spaces or new lines)."""

    customer_ids = forms.CharField(
        label=_("顧客ID"),
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("複数の顧客に設定するときは、IDをカンマ・空白・改行で区切って入力します。"),
    )

    class Meta:
        model = LegalHold
        fields = ["reason", "reference", "until", "note"]

    def clean_customer_ids(self) -> list[int]:
        raw = self.cleaned_data["customer_ids"].strip()
        if not raw or not _IDS.match(raw):
            raise ValidationError(_("顧客IDは数字で入力してください。"))
        return sorted({int(x) for x in re.split(r"[\s,、]+", raw) if x})


@admin.register(LegalHold)
class LegalHoldAdmin(admin.ModelAdmin):
    """Legal holds: placed and released through services; never edited or deleted."""

    list_display = (
        "__str__",
        "customer_id",
        "reason",
        "reference",
        "placed_by",
        "placed_at",
        "until",
        "in_force",
    )
    list_filter = ("reason",)
    search_fields = ("reference",)
    raw_id_fields = ("customer",)
    actions = ["release"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[LegalHold]:
        return selectors.legal_holds_for(user=request.user).select_related("placed_by")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = LegalHoldAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["customer_ids", "reason", "reference", "until", "note"]
        return [
            "customer",
            "reason",
            "reference",
            "note",
            "placed_by",
            "placed_at",
            "until",
            "released_at",
            "released_by",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj) if obj is not None else []

    @admin.display(description=_("有効"), boolean=True)
    def in_force(self, obj: LegalHold) -> bool:
        return obj.is_active()

    def save_model(self, request: HttpRequest, obj: LegalHold, form: Any, change: bool) -> None:
        if change:
            return
        holds = services.legal_hold_place(
            customer_ids=form.cleaned_data["customer_ids"],
            reason=obj.reason,
            placed_by=request_user(request),
            until=obj.until,
            reference=obj.reference,
            note=obj.note,
        )
        obj.pk = holds[0].pk

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        try:
            return super().add_view(request, form_url, extra_context)
        except services.RetentionError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            from django.http import HttpResponseRedirect

            return HttpResponseRedirect(request.path)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description=_("選択したリーガルホールドを解除する"), permissions=["change"])
    def release(self, request: HttpRequest, queryset: QuerySet[LegalHold]) -> None:
        n = services.legal_hold_release(holds=list(queryset), released_by=request_user(request))
        self.message_user(request, gettext("%(n)d件のリーガルホールドを解除しました。") % {"n": n})


@admin.register(RetentionRun)
class RetentionRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Runs: read-only, with progress and live counts while running."""

    list_display = (
        "__str__",
        "policy",
        "status",
        "started_at",
        "finished_at",
        "progress_pct",
        "c_examined",
        "c_done",
        "c_held",
        "c_failed",
    )
    list_filter = ("status", "action")
    list_select_related = ("policy",)
    readonly_fields = ("progress_pct", "counts_table")
    exclude = ()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [
            "policy",
            "status",
            "as_of",
            "started_at",
            "finished_at",
            "started_by",
            "scope",
            "trigger",
            "days",
            "action",
            "progress_pct",
            "counts_table",
            "failures",
            "note",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

    def _counts(self, obj: RetentionRun) -> dict[str, int]:
        # Summed from the slices while running; cached on the row object so a list row aggregates once.
        cached = getattr(obj, "_counts_cache", None)
        if cached is None:
            if obj.status == RetentionRun.Status.RUNNING:
                cached = obj.live_counts()
            else:
                cached = {c: getattr(obj, c) for c in RetentionRun.COUNTERS}
            obj._counts_cache = cached  # type: ignore[attr-defined]  # stub gap: a memo the model does not declare
        return cached

    @admin.display(description=_("進捗"))
    def progress_pct(self, obj: RetentionRun) -> str:
        return f"{obj.progress() * 100:.0f}%"

    @admin.display(description=_("確認"))
    def c_examined(self, obj: RetentionRun) -> int:
        return self._counts(obj)["examined"]

    @admin.display(description=_("処理済み"))
    def c_done(self, obj: RetentionRun) -> int:
        c = self._counts(obj)
        return c["erased"] + c["anonymised"] + c["pseudonymised"]

    @admin.display(description=_("保存義務で除外"))
    def c_held(self, obj: RetentionRun) -> int:
        return self._counts(obj)["skipped_hold"]

    @admin.display(description=_("失敗"))
    def c_failed(self, obj: RetentionRun) -> int:
        return self._counts(obj)["failed"]

    @admin.display(description=_("件数"))
    def counts_table(self, obj: RetentionRun) -> Any:
        labels = {
            "examined": gettext("確認"),
            "erased": gettext("消去"),
            "anonymised": gettext("匿名化"),
            "pseudonymised": gettext("仮名化"),
            "skipped_hold": gettext("リーガルホールドにより除外"),
            "failed": gettext("失敗"),
        }
        c = self._counts(obj)
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", ((labels[k], c[k]) for k in labels)),
        )


@admin.register(Tombstone)
class TombstoneAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Proof of erasures: keyed hashes, no personal data. Read-only."""

    list_display = ("short_hash", "scope", "action", "policy", "run", "reason", "performed_at")
    list_filter = ("scope", "action")
    search_fields = ("subject_hash",)
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tombstone]:
        return Tombstone.objects.restrict(request.user, "view")

    @admin.display(description=_("対象ハッシュ"))
    def short_hash(self, obj: Tombstone) -> str:
        return obj.subject_hash[:16] + "…"

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        term = search_term.strip().lower()
        return (queryset.filter(subject_hash=term), False) if term else (queryset, False)
