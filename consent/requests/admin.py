"""The request desk's admin (開示等請求): the queue, the request page and one page per action.

Presentation only: every change goes through consent.requests.services. The state and every fact a service
establishes are read-only on the page; the actions beside them are forms that call the service. Which
requests a user sees is the gate's (`DataSubjectRequest.objects.restrict`): their own as handler, every
request for support leads and the privacy officer. Every page of the queue and every request opened is an
access entry in the audit trail.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from consent.disclosure import services as package_services
from consent.disclosure.admin import DisclosurePackageInline
from consent.models import Objection
from consent.requests import selectors, services
from consent.requests.models import (
    FEE_KINDS,
    OPEN_STATES,
    DataSubjectRequest,
    ErasureAction,
    IdentityVerification,
    RejectionGround,
    RequestState,
)
from consent.rules import JST
from crm.admin.mixins import AccessLoggedAdminMixin, ScaleSafeAdmin, admin_page, object_not_found_redirect
from crm.audit.actors import request_user
from crm.classification import mask_value
from crm.models import Customer
from crm.permissions import ROLE_PRIVACY, ROLE_SUPPORT, ROLE_SUPPORT_LEAD, can_view_pii

if TYPE_CHECKING:
    from django.db.models import Field
    from django_stubs_ext import StrOrPromise


def _local(moment: dt.datetime) -> str:
    """A moment as the desk reads it: Japan time, to the minute."""
    return moment.astimezone(JST).strftime("%Y-%m-%d %H:%M")


# --- the queue's filters (static lookups on indexed columns) ---------------------------------------------


class DueFilter(admin.SimpleListFilter):
    """Open requests by their nearest deadline: overdue, due within 3 days, due later."""

    title = _("期限")
    parameter_name = "due"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return [
            ("overdue", _("期限超過")),
            ("soon", _("3日以内に期限")),
            ("due", _("期限まで4日以上")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("overdue", "soon", "due"):
            return queryset.filter(selectors.due_bucket_q(str(self.value())), state__in=list(OPEN_STATES))
        return queryset


class StateFilter(admin.SimpleListFilter):
    """The queue shows open requests unless another state is chosen."""

    title = _("状態")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return [("all", _("すべて")), *[(s.value, s.label) for s in RequestState]]

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": _("未完了"),
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset.filter(state__in=list(OPEN_STATES))
        if value == "all":
            return queryset
        return queryset.filter(state=value)


def desk_users() -> QuerySet[Any]:
    """Staff of the desk (the handler choices): the support desk, support lead and privacy roles."""
    roles = (ROLE_SUPPORT, ROLE_SUPPORT_LEAD, ROLE_PRIVACY)
    return (
        get_user_model()
        .objects.filter(is_active=True, groups__name__in=roles)
        .distinct()
        .order_by("username")
    )


class HandlerFilter(admin.SimpleListFilter):
    """By handler: the desk's staff (a handful), not the whole user table; "unassigned" too."""

    title = _("担当者")
    parameter_name = "handler"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return [("none", _("未割当")), *[(str(u.pk), u.get_username()) for u in desk_users()]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "none":
            return queryset.filter(handler__isnull=True)
        if value and value.isdigit():
            return queryset.filter(handler_id=int(value))
        return queryset


# --- forms of the actions ------------------------------------------------------------------------------


class RequestAddForm(forms.ModelForm):
    """A request received by phone, letter, counter or e-mail."""

    class Meta:
        model = DataSubjectRequest
        fields = (
            "kind",
            "jurisdiction",
            "channel",
            "received_at",
            "language",
            "disclosure_method",
            "requester_name",
            "requester_email",
            "requester_phone",
            "requester_member_no",
            "details",
            "handler",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The same form class renders the read-only page (no fields then): only the add form is adjusted.
        if "channel" in self.fields:
            # Staff record what reached them by hand: the API and the web form record their own requests.
            channel = cast(forms.ChoiceField, self.fields["channel"])
            shown = cast(list[tuple[str, Any]], channel.choices)  # the form field's normalised list
            channel.choices = [(c, label) for c, label in shown if c not in ("api", "web_form")]
            cast(forms.ModelChoiceField, self.fields["handler"]).queryset = desk_users()
            self.fields["received_at"].initial = timezone.now


class AssignForm(forms.Form):
    handler = forms.ModelChoiceField(label=_("担当者"), queryset=get_user_model().objects.none())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["handler"]).queryset = desk_users()


class VerifyForm(forms.Form):
    method = forms.ChoiceField(
        label=_("確認方法"),
        choices=[
            c
            for c in IdentityVerification.Method.choices
            if c[0] != IdentityVerification.Method.EMAIL_CONTROL
        ],
    )
    evidence_reference = forms.CharField(
        label=_("証跡の参照"),
        max_length=200,
        required=False,
        help_text=_("書類の受付番号など。書類の番号そのものや個人情報は書かないでください。"),
    )


class LinkForm(forms.Form):
    customer_id = forms.IntegerField(label=_("顧客ID"), min_value=1)


class FeeForm(forms.Form):
    amount = forms.IntegerField(label=_("手数料（円）"), min_value=0, max_value=100_000)


class ExtendForm(forms.Form):
    reason = forms.CharField(label=_("延長の理由"), max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))


CORRECTABLE = ("family_name", "given_name", "family_name_kana", "given_name_kana", "email", "phone")


class CorrectForm(forms.Form):
    field = forms.ChoiceField(label=_("訂正する項目"), choices=())
    value = forms.CharField(label=_("訂正後の内容"), max_length=254, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = [n for n in CORRECTABLE if any(f.name == n for f in Customer._meta.fields)]
        labels = [(n, cast("Field[Any, Any]", Customer._meta.get_field(n)).verbose_name) for n in names]
        self.fields["field"].choices = labels  # type: ignore[attr-defined]  # stub gap: ChoiceField.choices


class ObjectionForm(forms.Form):
    scope = forms.ChoiceField(label=_("対象"), choices=Objection.Scope.choices)
    purpose_code = forms.CharField(
        label=_("利用目的コード"),
        max_length=50,
        required=False,
        help_text=_("利用目的ごとの異議の場合に指定します（正当な利益に基づく利用目的）。"),
    )


class ApprovalAskForm(forms.Form):
    erasure_action = forms.ChoiceField(label=_("消去の方法"), choices=ErasureAction.choices)


class ConfirmForm(forms.Form):
    """An action without input: the page asks for a confirmation click."""


class CompleteForm(forms.Form):
    note = forms.CharField(
        label=_("請求者への回答"),
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("対応結果の通知に記載されます。"),
    )


class RejectForm(forms.Form):
    ground = forms.ChoiceField(label=_("不対応の理由"), choices=RejectionGround.choices)
    explanation = forms.CharField(
        label=_("本人への説明（法第36条）"), max_length=4000, widget=forms.Textarea(attrs={"rows": 5})
    )


# name → (label, form, service call, states where offered)
Act = Callable[[DataSubjectRequest, Any, dict[str, Any]], object]


def _customer(request: DataSubjectRequest, user: Any, data: dict[str, Any]) -> Customer:
    customer = Customer.objects.restrict(user, "view").filter(pk=data["customer_id"]).first()
    if customer is None:
        raise ValidationError(_("この顧客は存在しないか、閲覧できません。"))
    return customer


ACTIONS: dict[str, tuple[StrOrPromise, type[forms.Form], Act, tuple[str, ...]]] = {
    "assign": (
        _("担当者を割り当てる"),
        AssignForm,
        lambda r, u, d: services.request_assign(request=r, handler=d["handler"], actor=u),
        OPEN_STATES,
    ),
    "start_verification": (
        _("本人確認を開始する"),
        ConfirmForm,
        lambda r, u, d: services.request_start_verification(request=r, actor=u),
        (RequestState.RECEIVED,),
    ),
    "verify": (
        _("本人確認を記録する"),
        VerifyForm,
        lambda r, u, d: services.request_verify_identity(
            request=r, actor=u, method=d["method"], evidence_reference=d["evidence_reference"]
        ),
        (RequestState.RECEIVED, RequestState.IDENTITY),
    ),
    "link": (
        _("顧客を紐付ける"),
        LinkForm,
        lambda r, u, d: services.request_link_customer(request=r, customer=_customer(r, u, d), actor=u),
        OPEN_STATES,
    ),
    "fee": (
        _("手数料を記録する（法第38条）"),
        FeeForm,
        lambda r, u, d: services.request_record_fee(request=r, amount=d["amount"], actor=u),
        OPEN_STATES,
    ),
    "extend": (
        _("期限を延長する（GDPR第12条3項）"),
        ExtendForm,
        lambda r, u, d: services.request_extend(request=r, reason=d["reason"], actor=u),
        OPEN_STATES,
    ),
    "correct": (
        _("訂正する（法第34条）"),
        CorrectForm,
        lambda r, u, d: services.request_correct(request=r, actor=u, changes={d["field"]: d["value"]}),
        (RequestState.IN_PROGRESS,),
    ),
    "stop_use": (
        _("利用を停止する（法第35条）"),
        ConfirmForm,
        lambda r, u, d: services.request_stop_use(request=r, actor=u),
        (RequestState.IN_PROGRESS,),
    ),
    "stop_provision": (
        _("第三者提供を停止する（法第35条第3項）"),
        ConfirmForm,
        lambda r, u, d: services.request_stop_provision(request=r, actor=u),
        (RequestState.IN_PROGRESS,),
    ),
    "objection": (
        _("異議を記録する（GDPR第21条）"),
        ObjectionForm,
        lambda r, u, d: services.request_record_objection(
            request=r, actor=u, scope=d["scope"], purpose_code=d["purpose_code"]
        ),
        (RequestState.IN_PROGRESS,),
    ),
    "ask_approval": (
        _("消去の承認を依頼する"),
        ApprovalAskForm,
        lambda r, u, d: services.request_ask_erasure_approval(request=r, action=d["erasure_action"], actor=u),
        (RequestState.IN_PROGRESS,),
    ),
    "approve": (
        _("消去を承認する（二者確認）"),
        ConfirmForm,
        lambda r, u, d: services.request_approve_erasure(request=r, approver=u),
        (RequestState.AWAITING_APPROVAL,),
    ),
    "erase": (
        _("承認された消去を実行する"),
        ConfirmForm,
        lambda r, u, d: services.request_erase(request=r, actor=u),
        (RequestState.IN_PROGRESS,),
    ),
    "package": (
        _("開示データを作成する"),
        ConfirmForm,
        lambda r, u, d: package_services.disclosure_package_order(request=r, actor=u),
        (RequestState.IN_PROGRESS,),
    ),
    "complete": (
        _("完了する"),
        CompleteForm,
        lambda r, u, d: services.request_complete(request=r, actor=u, note=d["note"]),
        (RequestState.IN_PROGRESS,),
    ),
    "reject": (
        _("不対応とする（理由を通知）"),
        RejectForm,
        lambda r, u, d: services.request_reject(
            request=r, actor=u, ground=d["ground"], explanation=d["explanation"]
        ),
        OPEN_STATES,
    ),
}


def _offered(name: str, request: DataSubjectRequest) -> bool:
    """Whether the page offers action `name` now (the service decides finally)."""
    states = ACTIONS[name][3]
    if request.state not in states:
        return False
    if name == "fee":
        return request.kind in FEE_KINDS
    if name == "extend":
        return request.jurisdiction != "appi" and request.extension_notice_sent_at is None
    if name == "correct":
        return request.kind in services.CORRECTION_KINDS
    if name == "stop_use":
        return request.kind in services.STOP_USE_KINDS
    if name == "stop_provision":
        return request.kind in services.STOP_PROVISION_KINDS
    if name == "package":
        return request.kind in package_services.PACKAGE_KINDS
    if name == "objection":
        return request.kind in services.OBJECTION_KINDS
    if name in ("ask_approval", "erase"):
        if request.kind not in services.ERASURE_KINDS:
            return False
        return (name == "erase") == bool(request.approved_by_id and not services._erased(request))
    return True


ARTICLES = {
    "appi": _("法第33条〜第35条（遅滞なく。社内期限: 受付の翌日から%(days)s日）・法第39条"),
    "gdpr": _("GDPR第12条3項（受付から1か月）"),
    "gdpr_extended": _("GDPR第12条3項（延長: 受付から3か月）"),
}


QUEUE_ONLY = (
    "id",
    "kind",
    "state",
    "handler",
    "handler__username",
    "received_at",
    "due_on",
    "jurisdiction",
)


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(AccessLoggedAdminMixin, ScaleSafeAdmin):
    """The queue of 開示等請求 (due, due within 3 days, overdue; nearest deadline first) and each request."""

    form = RequestAddForm
    inlines = (DisclosurePackageInline,)  # the request's packages and their progress (consent.disclosure)

    class Media:
        css = {"all": ("consent/request_desk.css",)}

    list_display = ("number", "kind", "state", "handler", "received_on", "due_display", "jurisdiction")
    list_display_links = ("number",)
    list_filter = (StateFilter, DueFilter, "kind", HandlerFilter)
    ordering = ("due_on", "id")
    list_select_related = ("handler",)
    actions = None
    search_fields = ("=id",)
    search_help_text = _("受付番号で検索します。")

    # Sorted only by indexed columns: (due_on, id) and id.
    sortable_by = ("number", "due_display")

    def get_queryset(self, request: HttpRequest) -> QuerySet[DataSubjectRequest]:
        qs = selectors.requests_visible(user=request.user)
        match = getattr(request, "resolver_match", None)
        if match and match.url_name == "consent_datasubjectrequest_changelist":
            # The queue shows no requester data: nothing personal is read (or decrypted) for it.
            qs = qs.only(*QUEUE_ONLY)
        return qs

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> tuple[Any, bool]:
        term = search_term.strip().lstrip("#")
        if not term:
            return queryset, False
        return (
            queryset.filter(pk=int(term)) if term.isdigit() and len(term) < 18 else queryset.none()
        ), False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return RequestAddForm.Meta.fields
        return (
            "number",
            "kind",
            "state",
            "jurisdiction",
            "channel",
            "received_at",
            "language",
            "disclosure_method",
            "fee_display",
            "handler",
            "customer_display",
            "provision_stop_display",
            "deadlines",
            "verifications",
            "approval",
            "messages_sent",
            "completion_display",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return self.get_fields(request, obj)

    # --- add: through the service ----------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            raise PermissionDenied
        created = services.request_create(
            actor=request_user(request),
            **{k: v for k, v in form.cleaned_data.items() if k in form.Meta.fields},
        )
        obj.pk = created.pk
        obj._state.adding = False

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None

    # --- columns -----------------------------------------------------------------------------------------

    @admin.display(description=_("受付番号"), ordering="id")
    def number(self, obj: DataSubjectRequest) -> str:
        return f"#{obj.pk}"

    @admin.display(description=_("受付日"), ordering="received_at")
    def received_on(self, obj: DataSubjectRequest) -> str:
        return _local(obj.received_at)[:10]

    @admin.display(description=_("直近の期限"), ordering="due_on")
    def due_display(self, obj: DataSubjectRequest) -> str:
        if obj.due_on is None:
            return "-"
        bucket = selectors.due_bucket(obj)
        label = {"overdue": _("期限超過"), "soon": _("3日以内"), "due": ""}.get(bucket, "")
        if not label:
            return obj.due_on.isoformat()
        return format_html(
            '{} <span class="dsr-due dsr-due-{}">{}</span>', obj.due_on.isoformat(), bucket, label
        )

    # --- the request page ----------------------------------------------------------------------------

    @admin.display(description=_("手数料（法第38条）"))
    def fee_display(self, obj: DataSubjectRequest) -> str:
        if obj.fee_amount is None:
            return "-"
        return f"{obj.fee_amount:,}円"

    @admin.display(description=_("対象の顧客"))
    def customer_display(self, obj: DataSubjectRequest) -> str:
        if obj.customer_id is None:
            return "-"
        url = reverse("admin:crm_customer_change", args=[obj.customer_id])
        return format_html('<a href="{}">{}</a>', url, _("顧客 #%(id)s") % {"id": obj.customer_id})

    @admin.display(description=_("第三者提供の停止（法第35条第3項）"))
    def provision_stop_display(self, obj: DataSubjectRequest) -> str:
        """When this request stopped provision to third parties of its customer (the work log's step; the
        fact is the customer's, set by crm.services.customer_stop_provision and shown on their page)."""
        steps = [s["at"] for s in obj.work_log if s["action"] == "stopped_provision"]
        if not steps:
            return "-" if obj.kind in services.STOP_PROVISION_KINDS else str(_("対象外"))
        return _local(dt.datetime.fromisoformat(steps[0]))

    @admin.display(description=_("期限"))
    def deadlines(self, obj: DataSubjectRequest) -> str:
        from django.conf import settings

        days = int(getattr(settings, "APPI_REQUEST_DAYS", 14))
        rows: list[tuple[Any, ...]] = []
        if obj.jurisdiction in ("appi", "both") and obj.appi_due:
            rows.append((obj.appi_due.isoformat(), ARTICLES["appi"] % {"days": days}))
        if obj.jurisdiction in ("gdpr", "both") and obj.gdpr_due:
            rows.append((obj.gdpr_due.isoformat(), ARTICLES["gdpr"]))
            if obj.extension_notice_sent_at and obj.gdpr_extended_due:
                rows.append((obj.gdpr_extended_due.isoformat(), ARTICLES["gdpr_extended"]))
        listing = format_html_join("", "<div>{} — {}</div>", rows)
        extra = ""
        if obj.extension_notice_sent_at:
            extra = format_html(
                "<div>{}: {}（{}）</div>",
                _("延長の通知"),
                _local(obj.extension_notice_sent_at),
                obj.extension_reason,
            )
        return format_html("{}{}", listing, extra)

    @admin.display(description=_("本人確認の記録"))
    def verifications(self, obj: DataSubjectRequest) -> str:
        steps = list(obj.verifications.select_related("verified_by"))
        if not steps:
            return str(_("未実施（本人確認が完了するまで請求に応じる操作はできません）"))
        rows = [
            (
                _local(s.verified_at),
                s.get_method_display(),
                s.evidence_reference or "-",
                s.verified_by.get_username() if s.verified_by else _("請求者本人（確認リンク）"),
                _("完了") if s.completes else "",
            )
            for s in steps
        ]
        return format_html_join("", "<div>{} {} / {} / {} {}</div>", rows)

    @admin.display(description=_("消去の承認（二者確認）"))
    def approval(self, obj: DataSubjectRequest) -> str:
        if not obj.approval_requested_by_id:
            return "-"
        if obj.approved_by_id and obj.approved_by and obj.approved_at:
            return format_html(
                "{} {}（{}）",
                _("承認済み"),
                obj.approved_by.get_username(),
                _local(obj.approved_at),
            )
        return str(_("承認待ち"))

    @admin.display(description=_("請求者への連絡"))
    def messages_sent(self, obj: DataSubjectRequest) -> str:
        sent = list(obj.messages.all())
        if not sent:
            return "-"
        rows = [(_local(m.sent_at), m.get_kind_display(), m.subject) for m in sent]
        return format_html_join("", "<div>{} {}: {}</div>", rows)

    @admin.display(description=_("対応完了記録"))
    def completion_display(self, obj: DataSubjectRequest) -> str:
        record = getattr(obj, "completion", None)
        if record is None:
            return "-"
        summary = record.summary
        rows = [
            (_("結果"), record.get_outcome_display()),
            (_("本人の鍵付きハッシュ"), record.subject_hash[:16] + "…"),
            (_("訂正した項目"), ", ".join(summary.get("changed", [])) or "-"),
            (_("利用停止"), _("あり") if summary.get("stopped_use") else "-"),
            (_("第三者提供の停止"), _("あり") if summary.get("stopped_provision") else "-"),
            (_("消去"), ", ".join(f"{e['action']} {e['at'][:10]}" for e in summary.get("erased", [])) or "-"),
            (
                _("保存したもの（理由）"),
                "; ".join(f"{k['what']}: {k['why']}" for k in summary.get("kept", [])) or "-",
            ),
            (_("記録日時"), _local(record.recorded_at)),
        ]
        return format_html("<dl>{}</dl>", format_html_join("", "<dt>{}</dt><dd>{}</dd>", rows))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        """The request page; what depends on the user (requester in clear or masked, matching customers
        they may see, the actions offered) is computed here for the template."""
        obj = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if obj is not None:
            context.update(_page_context(obj, request))
        return super().change_view(request, object_id, form_url, context)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The page is read-only for everyone; the actions check "change" through the gate.
        return False

    # --- one page per action --------------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "<int:request_id>/act/<slug:action>/",
                self.admin_site.admin_view(self.action_view),
                name="consent_datasubjectrequest_act",
            ),
        ]
        return extra + super().get_urls()

    def action_view(self, request: HttpRequest, request_id: int, action: str) -> HttpResponse:
        if action not in ACTIONS:
            return object_not_found_redirect(request, self.model._meta, request_id)
        if not request.user.has_perm("consent.change_datasubjectrequest"):
            raise PermissionDenied
        obj = selectors.requests_visible(user=request.user, action="change").filter(pk=request_id).first()
        if obj is None:
            return object_not_found_redirect(request, self.model._meta, request_id)
        title, form_class, act, _states = ACTIONS[action]
        data = request.POST if request.method == "POST" else None
        initial = {"customer_id": request.GET.get("customer_id")} if action == "link" else None
        form = form_class(data, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                act(obj, request_user(request), form.cleaned_data)
            except (ValidationError, PermissionDenied) as exc:
                text = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
                form.add_error(None, text)
            else:
                messages.success(request, _("%(action)s: 完了しました。") % {"action": title})
                return HttpResponseRedirect(reverse("admin:consent_datasubjectrequest_change", args=[obj.pk]))
        return admin_page(
            self,
            request,
            "consent/admin/request_action.html",
            f"#{obj.pk} {title}",
            form=form,
            original=obj,
            submit_label=_("実行する"),
        )


def _page_context(obj: DataSubjectRequest, request: HttpRequest) -> dict[str, Any]:
    user = request.user
    clear = can_view_pii(user)
    fields = [
        (_("氏名"), "requester_name"),
        (_("メールアドレス"), "requester_email"),
        (_("電話番号"), "requester_phone"),
        (_("会員番号"), "requester_member_no"),
    ]
    requester = [
        (label, value if clear else mask_value("consent.DataSubjectRequest", name, value))
        for label, name in fields
        if (value := getattr(obj, name))
    ]
    matches = []
    if obj.customer_id is None and obj.is_open:
        link = reverse("admin:consent_datasubjectrequest_act", args=[obj.pk, "link"])
        matches = [
            {
                "id": m.customer.pk,
                "url": reverse("admin:crm_customer_change", args=[m.customer.pk]),
                "by": ", ".join(m.by),
                "link": f"{link}?customer_id={m.customer.pk}",
            }
            for m in selectors.request_matches(request=obj, user=user)
        ]
    actions = (
        [
            (reverse("admin:consent_datasubjectrequest_act", args=[obj.pk, name]), ACTIONS[name][0])
            for name in ACTIONS
            if _offered(name, obj)
        ]
        if user.has_perm("consent.change_datasubjectrequest")
        else []
    )
    return {
        "dsr_requester": requester,
        "dsr_details": obj.details
        if clear
        else (mask_value("consent.DataSubjectRequest", "details", obj.details) if obj.details else ""),
        "dsr_matches": matches,
        "dsr_show_matches": obj.customer_id is None and obj.is_open,
        "dsr_actions": actions,
    }
