"""Admin of purposes and the consent ledger: presentation only; every write goes through consent.services.

The ledger is read-only here for everyone (superusers included): recording a consent or a withdrawal is a
form that calls `consent_record`, never an edit of a row. Lists are scale-safe (estimated counts, no facets,
filters and searches on indexed columns only) and show only customers the user may view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone, translation
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from consent import selectors, services
from consent.models import (
    ConsentEvent,
    ConsentState,
    Objection,
    Purpose,
    PurposeVersion,
    SpecialCareRecord,
)
from crm.admin.mixins import (
    AccessLoggedAdminMixin,
    NoEditAdminMixin,
    ReadOnlyAdminMixin,
    ReadOnlyInline,
    ScaleSafeAdmin,
    admin_page,
    object_not_found_redirect,
)
from crm.audit.actors import request_user
from crm.classification import mask_value
from crm.models import Customer
from crm.permissions import can_view_pii

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise, StrPromise

TEXT_FIELDS = ("title_ja", "title_en", "description_ja", "description_en")


def _errors(exc: ValidationError) -> str:
    return " ".join(str(m) for m in exc.messages)


# --- purposes --------------------------------------------------------------------------------------------


class PurposeForm(forms.ModelForm):
    """The purpose's settings plus its current wording; saving a changed wording makes a new version."""

    title_ja = forms.CharField(label=_("名称（日本語）"), max_length=200)
    title_en = forms.CharField(label=_("名称（英語）"), max_length=200)
    description_ja = forms.CharField(label=_("説明（日本語）"), widget=forms.Textarea(attrs={"rows": 4}))
    description_en = forms.CharField(label=_("説明（英語）"), widget=forms.Textarea(attrs={"rows": 4}))
    basis_change_reason = forms.CharField(
        label=_("法的根拠の変更の判断"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("同意が記録されている利用目的の法的根拠を同意以外に変える場合の、記録された判断。"),
    )

    class Meta:
        model = Purpose
        fields = ("code", "category", "legal_basis", "is_published", "display_order")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.instance.current_version if self.instance.pk else None
        if current is not None:
            for name in TEXT_FIELDS:
                if name in self.fields:  # not for those who only view (read-only readers instead)
                    self.fields[name].initial = getattr(current, name)
            # The code is what the API and segments refer to: fixed once created.
            if "code" in self.fields:
                self.fields["code"].disabled = True

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # self.instance still holds the stored basis here (the form's values are applied after clean()).
        new_basis = data.get("legal_basis")
        if (
            self.instance.pk
            and new_basis
            and not (data.get("basis_change_reason") or "").strip()
            and selectors.basis_change_needs_decision(purpose=self.instance, new_basis=new_basis)
        ):
            self.add_error(
                "basis_change_reason",
                _(
                    "同意が記録されている利用目的の法的根拠を同意以外に変更するには、"
                    "判断の記録（理由）が必要です（GDPR第6条・第7条3項）。"
                ),
            )
        return data


class PurposeVersionInline(ReadOnlyInline):
    """Every wording the purpose ever had, newest first; read-only forever."""

    model = PurposeVersion
    ordering = ("-version",)
    fields = ("version", "title_ja", "title_en", "description_ja", "legal_basis", "text_hash", "created_at")


@admin.register(Purpose)
class PurposeAdmin(admin.ModelAdmin):
    """Purposes of use (利用目的, APPI Arts. 17, 21): kept by the privacy officer, published on /privacy/."""

    form = PurposeForm
    list_display = ("code", "title", "category", "legal_basis", "version_no", "is_published", "display_order")
    list_filter = ("category", "is_published")
    ordering = ("display_order", "code")
    inlines = [PurposeVersionInline]
    actions = None
    fieldsets = [
        (None, {"fields": ["code", "category", "legal_basis", "is_published", "display_order"]}),
        (
            _("文面（変更すると新しい版になります。過去の版はそのまま残ります）"),
            {"fields": [*TEXT_FIELDS, "basis_change_reason"]},
        ),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Purpose]:
        return super().get_queryset(request).select_related("current_version")

    @admin.display(description=_("名称"))
    def title(self, obj: Purpose) -> str:
        if not obj.current_version:
            return "-"
        english = translation.get_language() == "en"
        return obj.current_version.title_en if english else obj.current_version.title_ja

    @admin.display(description=_("現行版"))
    def version_no(self, obj: Purpose) -> str:
        return f"v{obj.current_version.version}" if obj.current_version else "-"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Consents point at purposes and their versions: a purpose is unpublished, never deleted.
        return False

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        # The reason for a change of basis is asked of those who may change the purpose; it is recorded on the
        # new version, so a viewer has nothing to read there (it showed "None").
        if obj is not None and not self.has_change_permission(request, obj):
            return [
                (title, {"fields": [f for f in opts["fields"] if f != "basis_change_reason"]})
                for title, opts in self.fieldsets
            ]
        return self.fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # For those who only view: the current wording through the readers below (the form fields of the
        # wording are not attributes of the purpose, and showed "None").
        if obj is not None and not self.has_change_permission(request, obj):
            return [*super().get_readonly_fields(request, obj), *TEXT_FIELDS]
        return super().get_readonly_fields(request, obj)

    def save_model(self, request: HttpRequest, obj: Purpose, form: Any, change: bool) -> None:
        texts = {name: form.cleaned_data[name] for name in TEXT_FIELDS}
        if not change:
            created = services.purpose_create(
                code=obj.code,
                category=obj.category,
                legal_basis=obj.legal_basis,
                is_published=obj.is_published,
                display_order=obj.display_order,
                actor=request_user(request),
                **texts,
            )
            obj.pk = created.pk
            return
        services.purpose_update_settings(
            purpose=obj,
            category=obj.category,
            is_published=obj.is_published,
            display_order=obj.display_order,
            actor=request_user(request),
        )
        before = obj.current_version_id
        version = services.purpose_revise(
            purpose=obj,
            legal_basis=obj.legal_basis,
            basis_change_reason=form.cleaned_data.get("basis_change_reason") or "",
            actor=request_user(request),
            **texts,
        )
        if version.pk != before:
            messages.info(
                request, _("文面を変更したため、新しい版 v%(v)s を作成しました。") % {"v": version.version}
            )


def _wording_reader(name: str, label: Any) -> Any:
    @admin.display(description=label)
    def read(self: Any, obj: Purpose | None) -> str:
        version = obj.current_version if obj is not None else None
        return getattr(version, name) if version is not None else "-"

    return read


for _name, _field in PurposeForm.base_fields.items():
    if _name in TEXT_FIELDS:
        setattr(PurposeAdmin, _name, _wording_reader(_name, _field.label))


# --- recording consent from the admin -------------------------------------------------------------------


class PublishedPurposeField(forms.ModelChoiceField):
    """A published purpose (of `category`, when given), chosen by its code. The choices are read when a form
    is made (Django deep-copies its fields then), never at import."""

    def __init__(self, *, category: str | None = None, **kwargs: Any) -> None:
        self.category = category
        super().__init__(label=_("利用目的"), queryset=Purpose.objects.none(), to_field_name="code", **kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        field = super().__deepcopy__(memo)  # type: ignore[misc]  # stub gap: Field.__deepcopy__
        purposes = selectors.published_purposes()
        field.queryset = purposes.filter(category=self.category) if self.category else purposes
        return field


class ConsentRecordForm(forms.Form):
    """Staff-entered consent or withdrawal (paper form, store, call centre)."""

    customer_id = forms.IntegerField(label=_("顧客ID"), min_value=1)
    purpose = PublishedPurposeField()
    action = forms.ChoiceField(label=_("操作"), choices=ConsentEvent.Action.choices)
    method = forms.ChoiceField(
        label=_("方式"), choices=ConsentEvent.Method.choices, initial=ConsentEvent.Method.OPT_IN
    )
    channel = forms.ChoiceField(
        label=_("経路"), choices=ConsentEvent.Channel.choices, initial=ConsentEvent.Channel.PAPER
    )
    form_id = forms.CharField(label=_("書面・フォームの番号"), max_length=100, required=False)
    occurred_at = forms.DateTimeField(
        label=_("同意・撤回の日時"), required=False, help_text=_("空欄なら現在時刻。")
    )


class BulkConsentForm(forms.Form):
    """The intermediate page of the 同意を記録 / 同意を撤回 actions."""

    channel = forms.ChoiceField(
        label=_("経路"), choices=ConsentEvent.Channel.choices, initial=ConsentEvent.Channel.PAPER
    )
    form_id = forms.CharField(label=_("書面・フォームの番号"), max_length=100, required=False)


def _record_many(
    request: HttpRequest, states: QuerySet[ConsentState], action: str, title: str
) -> HttpResponse | None:
    """Shared body of the grant and withdraw actions: the same page, the same number of clicks."""
    # Only rows of customers the user may change: viewing a customer is not enough to record for them.
    allowed = states.filter(customer__in=Customer.objects.restrict(request.user, "change").values("pk"))
    if "apply" in request.POST:
        form = BulkConsentForm(request.POST)
        if form.is_valid():
            done, refused = 0, []
            for state in allowed.select_related("customer", "purpose"):
                try:
                    services.consent_record(
                        purpose_code=state.purpose.code,
                        action=action,
                        method=(
                            ConsentEvent.Method.OPT_IN
                            if action == ConsentEvent.Action.GRANT
                            else ConsentEvent.Method.OPT_OUT
                        ),
                        channel=form.cleaned_data["channel"],
                        customer=state.customer,
                        evidence={"form_id": form.cleaned_data["form_id"]},
                        actor=request_user(request),
                    )
                    done += 1
                except ValidationError as exc:
                    refused.append(f"{state.customer}: {_errors(exc)}")
            messages.success(request, _("%(n)d 件を記録しました。") % {"n": done})
            for line in refused:
                messages.error(request, line)
            return None
    else:
        form = BulkConsentForm()
    return TemplateResponse(
        request,
        "consent/admin/bulk_consent.html",
        {
            **admin.site.each_context(request),
            "title": title,
            "form": form,
            "states": allowed.select_related("purpose__current_version")[:200],
            "action_name": request.POST.get("action", ""),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "opts": ConsentState._meta,
        },
    )


# --- the ledger ------------------------------------------------------------------------------------------


class PurposeListFilter(admin.SimpleListFilter):
    """Purposes (a small table) as static lookups; the ledger's purpose column is indexed."""

    title = _("利用目的")
    parameter_name = "purpose"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[Any, Any]]:
        return [(str(p.pk), p.code) for p in Purpose.objects.order_by("display_order", "code")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(purpose_id=int(value)) if value and value.isdigit() else queryset


def _exact_subject_search(queryset: QuerySet[Any], term: str, visitor: bool) -> QuerySet[Any]:
    """Search by exact customer id (digits) or exact visitor id: both are indexed."""
    term = term.strip()
    if not term:
        return queryset
    if term.isdigit():
        return queryset.filter(customer_id=int(term))
    return queryset.filter(visitor_id=term) if visitor else queryset.none()


def purpose_label(purpose: Purpose) -> str:
    """A purpose as a list shows it: its code and current title, in the user's language (its __str__, which
    the audit trail keeps, is in Japanese)."""
    version = purpose.current_version
    if version is None:
        return purpose.code
    if translation.get_language() == "en":
        return f"{purpose.code} ({version.title_en})"
    return f"{purpose.code}（{version.title_ja}）"


class PurposeColumnMixin:
    @admin.display(description=_("利用目的"))
    def purpose_shown(self, obj: Any) -> str:
        return purpose_label(obj.purpose)


def _history_link(customer_id: int | None) -> str:
    if not customer_id:
        return "-"
    url = reverse("admin:consent_customer_history", args=[customer_id])
    return format_html('<a href="{}">顧客 #{}</a>', url, customer_id)


@admin.register(ConsentEvent)
class ConsentEventAdmin(PurposeColumnMixin, AccessLoggedAdminMixin, NoEditAdminMixin, ScaleSafeAdmin):
    """The consent ledger (同意台帳): append-only, read-only for everyone; "追加" records via the service."""

    list_display = (
        "id",
        "subject",
        "purpose_shown",
        "version_no",
        "action",
        "method",
        "channel",
        "occurred_at",
        "recorded_at",
    )
    list_filter = (PurposeListFilter,)
    search_fields = ("visitor_id",)  # shows the box; get_search_results decides (exact, indexed)
    search_help_text = _("顧客ID（数字）または訪問者IDで完全一致検索します。")
    ordering = ("-id",)
    list_select_related = ("purpose__current_version", "purpose_version")
    actions = None

    def get_queryset(self, request: HttpRequest) -> QuerySet[ConsentEvent]:
        return selectors.consent_events_visible(user=request.user)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ConsentEvent], search_term: str
    ) -> tuple[QuerySet[ConsentEvent], bool]:
        return _exact_subject_search(queryset, search_term, visitor=True), False

    @admin.display(description=_("本人"))
    def subject(self, obj: ConsentEvent) -> str | StrPromise:
        return _history_link(obj.customer_id) if obj.customer_id else _("訪問者（未特定）")

    @admin.display(description=_("版"))
    def version_no(self, obj: ConsentEvent) -> str:
        return f"v{obj.purpose_version.version}"

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Evidence that is personal data (visitor id, address, user agent) is masked without the permission.
        pii = can_view_pii(request.user)
        return [
            "customer_link",
            "visitor_id" if pii else "visitor_masked",
            "purpose",
            "purpose_version",
            "action",
            "method",
            "channel",
            "form_id",
            "text_hash",
            "source_ip" if pii else "source_ip_masked",
            "user_agent" if pii else "user_agent_masked",
            "operator",
            "api_client_id",
            "source_event",
            "occurred_at",
            "recorded_at",
            "evidence_hash",
            "erased_at",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

    @admin.display(description=_("顧客"))
    def customer_link(self, obj: ConsentEvent) -> str:
        return _history_link(obj.customer_id)

    @admin.display(description=_("訪問者ID"))
    def visitor_masked(self, obj: ConsentEvent) -> str:
        return mask_value(ConsentEvent._meta.label, "visitor_id", obj.visitor_id) or "-"

    @admin.display(description=_("送信元IPアドレス"))
    def source_ip_masked(self, obj: ConsentEvent) -> str:
        return mask_value(ConsentEvent._meta.label, "source_ip", obj.source_ip) or "-"

    @admin.display(description=_("ユーザーエージェント"))
    def user_agent_masked(self, obj: ConsentEvent) -> str:
        return mask_value(ConsentEvent._meta.label, "user_agent", obj.user_agent) or "-"

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "customer/<int:customer_id>/",
                self.admin_site.admin_view(self.customer_history_view),
                name="consent_customer_history",
            ),
        ]
        return extra + super().get_urls()

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        """ "追加" is a recording form that calls consent_record; the ledger row itself is never a form."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        initial = {k: v for k, v in request.GET.items() if k in {"customer_id", "purpose", "action"}}
        form = ConsentRecordForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            customer = (
                Customer.objects.restrict(request.user, "change").filter(pk=data["customer_id"]).first()
            )
            if customer is None:
                form.add_error("customer_id", _("この顧客の同意を記録する権限がないか、顧客が存在しません。"))
            else:
                try:
                    services.consent_record(
                        purpose_code=data["purpose"].code,
                        action=data["action"],
                        method=data["method"],
                        channel=data["channel"],
                        customer=customer,
                        evidence={"form_id": data["form_id"]},
                        occurred_at=data["occurred_at"] or timezone.now(),
                        actor=request_user(request),
                    )
                except ValidationError as exc:
                    form.add_error(None, _errors(exc))
                else:
                    messages.success(request, _("同意台帳に記録しました。"))
                    return HttpResponseRedirect(reverse("admin:consent_customer_history", args=[customer.pk]))
        return admin_page(
            self, request, "consent/admin/record_consent.html", _("同意・撤回を記録"), form=form
        )

    def customer_history_view(self, request: HttpRequest, customer_id: int) -> HttpResponse:
        """One customer's current consents and full ledger history, read-only, with grant/withdraw links."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        # Only what the page shows: no personal value is decrypted for a consent history.
        customer = (
            Customer.objects.restrict(request.user, "view")
            .only("id", "status", "team_id")
            .filter(pk=customer_id)
            .first()
        )
        if customer is None:
            # As the customer's change page does: another team's customer and a missing one look the same.
            return object_not_found_redirect(request, Customer._meta, customer_id)
        may_record = (
            self.has_add_permission(request)
            and Customer.objects.restrict(request.user, "change").filter(pk=customer.pk).exists()
        )
        state = selectors.consent_state(customer=customer)
        purposes = list(selectors.published_purposes())
        rows = [(p, state.get(p.code)) for p in purposes]
        history = selectors.consent_history(user=request.user, customer_id=customer.pk)[:500]
        objections = selectors.objection_history(user=request.user, customer_id=customer.pk)[:100]
        may_object = may_record and request.user.has_perm("consent.add_objection")
        return admin_page(
            self,
            request,
            "consent/admin/customer_history.html",
            _("同意の状態と履歴: %(c)s") % {"c": customer},
            customer=customer,
            rows=rows,
            history=history,
            may_record=may_record,
            objections=objections,
            objection_add_url=reverse("admin:consent_objection_add") if may_object else "",
            add_url=reverse("admin:consent_consentevent_add"),
            customer_url=reverse("admin:crm_customer_change", args=[customer.pk]),
        )


class CustomerRecordAdminMixin:
    """Admins of rows about one customer each (current consent, 要配慮 records, objections): exact search by
    customer id, a link to the customer's consent history, and the rows the gate opens to the user."""

    model: Any
    # Annotated as ModelAdmin declares them, so the mixin's values satisfy the admin's own types.
    search_fields: ClassVar[tuple[str, ...] | list[str]] = ("customer__id",)
    search_help_text: ClassVar[StrOrPromise | None] = _("顧客ID（数字）で完全一致検索します。")
    ordering: ClassVar[tuple[str, ...] | list[str] | None] = ("-id",)
    list_select_related: ClassVar[bool | tuple[str, ...] | list[str]] = ("purpose__current_version",)

    def get_queryset(self, request: HttpRequest) -> Any:
        return self.model.objects.restrict(request.user, "view")

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        return _exact_subject_search(queryset, search_term, visitor=False), False

    @admin.display(description=_("顧客"))
    def customer_history(self, obj: Any) -> str:
        return _history_link(obj.customer_id)


@admin.register(ConsentState)
class ConsentStateAdmin(CustomerRecordAdminMixin, PurposeColumnMixin, ReadOnlyAdminMixin, ScaleSafeAdmin):
    """Current consent per customer × purpose, with the 同意を記録 / 同意を撤回 actions (GDPR Art. 7(3))."""

    list_display = ("id", "customer_history", "purpose_shown", "granted", "version", "channel", "occurred_at")
    list_filter = (PurposeListFilter,)
    actions = ["grant_selected", "withdraw_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ConsentState]:
        return selectors.consent_states_visible(user=request.user)

    def has_record_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("consent.add_consentevent")

    @admin.action(description=_("同意を記録"), permissions=["record"])
    def grant_selected(self, request: HttpRequest, queryset: QuerySet[ConsentState]) -> HttpResponse | None:
        return _record_many(request, queryset, ConsentEvent.Action.GRANT, str(_("同意を記録")))

    @admin.action(description=_("同意を撤回"), permissions=["record"])
    def withdraw_selected(
        self, request: HttpRequest, queryset: QuerySet[ConsentState]
    ) -> HttpResponse | None:
        return _record_many(request, queryset, ConsentEvent.Action.WITHDRAW, str(_("同意を撤回")))


# --- 要配慮個人情報 ------------------------------------------------------------------------------------


class SpecialCareForm(forms.Form):
    customer_id = forms.IntegerField(label=_("顧客ID"), min_value=1)
    purpose = PublishedPurposeField(category="special_care")
    kind = forms.ChoiceField(label=_("種類"), choices=SpecialCareRecord.Kind.choices)
    content = forms.CharField(label=_("内容"), widget=forms.Textarea(attrs={"rows": 3}))


def customer_record_add(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    form: forms.Form,
    *,
    write: Callable[[Customer, dict[str, Any]], object],
    refused: Any,
    done: Any,
    title: Any,
) -> HttpResponse:
    """The add page of a record about one customer that only its service writes (a 要配慮 record, an
    objection): the form, the customer looked up through the gate (restrict(user, "change"): another team's
    customer and a missing one are refused alike), the service's refusal shown on the form, the list after."""
    if not model_admin.has_add_permission(request):
        raise PermissionDenied
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        customer = Customer.objects.restrict(request.user, "change").filter(pk=data["customer_id"]).first()
        if customer is None:
            form.add_error("customer_id", refused)
        else:
            try:
                write(customer, data)
            except ValidationError as exc:
                form.add_error(None, _errors(exc))
            else:
                messages.success(request, done)
                opts = model_admin.opts
                return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    return admin_page(model_admin, request, "consent/admin/record_consent.html", title, form=form)


@admin.register(SpecialCareRecord)
class SpecialCareRecordAdmin(
    CustomerRecordAdminMixin, PurposeColumnMixin, AccessLoggedAdminMixin, NoEditAdminMixin, ScaleSafeAdmin
):
    """要配慮個人情報: written only with the customer's consent on record (APPI Art. 20(2)); masked unless
    the user may see personal data."""

    list_display = ("id", "customer_history", "kind", "purpose_shown", "created_at")
    actions = None

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        content = "content" if can_view_pii(request.user) else "content_masked"
        return ["customer_history", "purpose", "consent_event", "kind", content, "recorded_by", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

    @admin.display(description=_("内容"))
    def content_masked(self, obj: SpecialCareRecord) -> str:
        return mask_value(SpecialCareRecord._meta.label, "content", obj.content) or "-"

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        return customer_record_add(
            self,
            request,
            SpecialCareForm(request.POST or None),
            write=lambda customer, data: services.special_care_record_create(
                customer=customer,
                purpose_code=data["purpose"].code,
                kind=data["kind"],
                content=data["content"],
                actor=request_user(request),
            ),
            refused=_("この顧客の情報を登録する権限がないか、顧客が存在しません。"),
            done=_("要配慮個人情報を登録しました。"),
            title=_("要配慮個人情報を登録（法第20条第2項: 本人の同意が必要）"),
        )


# --- 異議（GDPR第21条） -----------------------------------------------------------------------------------


class ObjectionForm(forms.Form):
    """A person's objection taken by staff (GDPR Art. 21): to one legitimate-interest purpose, or to direct
    marketing as a whole."""

    customer_id = forms.IntegerField(label=_("顧客ID"), min_value=1)
    scope = forms.ChoiceField(label=_("対象"), choices=Objection.Scope.choices)
    purpose = PublishedPurposeField(
        required=False,
        help_text=_("利用目的ごとの異議のとき: 正当な利益に基づく利用目的（GDPR第21条1項）。"),
    )
    occurred_at = forms.DateTimeField(
        label=_("異議の日時"), required=False, help_text=_("空欄なら現在時刻。")
    )


class CompellingGroundsForm(forms.Form):
    reason = forms.CharField(
        label=_("やむを得ない正当な根拠（GDPR第21条1項）"),
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("本人の利益、権利及び自由に優越する根拠を記録します。記録は変更できません。"),
    )


@admin.register(Objection)
class ObjectionAdmin(CustomerRecordAdminMixin, AccessLoggedAdminMixin, NoEditAdminMixin, ScaleSafeAdmin):
    """Objections (GDPR Art. 21) and compelling-grounds decisions: append-only, read-only for everyone;
    "追加" records an objection via the service, "判断を記録" (privacy officer) answers one."""

    list_display = (
        "id",
        "customer_history",
        "kind",
        "scope",
        "purpose",
        "source",
        "occurred_at",
        "recorded_at",
    )
    actions = None

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        reason = "reason" if can_view_pii(request.user) else "reason_masked"
        fields = ["customer_history", "kind", "scope", "purpose", "answers", "source", reason]
        return [*fields, "operator", "api_client_id", "occurred_at", "recorded_at", "decide_link"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return self.get_fields(request, obj)

    @admin.display(description=_("判断の理由"))
    def reason_masked(self, obj: Objection) -> str:
        return mask_value(Objection._meta.label, "reason", obj.reason) or "-"

    @admin.display(description=_("やむを得ない正当な根拠"))
    def decide_link(self, obj: Objection) -> str:
        if obj.kind != Objection.Kind.OBJECTION or obj.scope != Objection.Scope.PURPOSE:
            return "-"
        url = reverse("admin:consent_objection_decide", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _("判断を記録（個人情報保護管理者）"))

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "<int:objection_id>/decide/",
                self.admin_site.admin_view(self.decide_view),
                name="consent_objection_decide",
            ),
        ]
        return extra + super().get_urls()

    def _render(self, request: HttpRequest, form: forms.Form, title: str) -> HttpResponse:
        return admin_page(self, request, "consent/admin/record_consent.html", title, form=form)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        return customer_record_add(
            self,
            request,
            ObjectionForm(request.POST or None, initial={"customer_id": request.GET.get("customer_id")}),
            write=lambda customer, data: services.objection_record(
                customer=customer,
                scope=data["scope"],
                purpose_code=data["purpose"].code if data["purpose"] else "",
                source=Objection.Source.ADMIN,
                occurred_at=data["occurred_at"] or timezone.now(),
                actor=request_user(request),
            ),
            refused=_("この顧客の異議を記録する権限がないか、顧客が存在しません。"),
            done=_("異議を記録しました。"),
            title=_("異議を記録（GDPR第21条）"),
        )

    def decide_view(self, request: HttpRequest, objection_id: int) -> HttpResponse:
        """The privacy officer's compelling-grounds decision on one objection (GDPR Art. 21(1))."""
        if not request.user.has_perm("consent.decide_objection"):
            raise PermissionDenied
        objection = get_object_or_404(Objection.objects.restrict(request.user, "view"), pk=objection_id)
        form = CompellingGroundsForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.objection_decide_compelling_grounds(
                    objection=objection, reason=form.cleaned_data["reason"], actor=request_user(request)
                )
            except ValidationError as exc:
                form.add_error(None, _errors(exc))
            else:
                messages.success(request, _("判断を記録しました。"))
                return HttpResponseRedirect(reverse("admin:consent_objection_changelist"))
        return self._render(request, form, str(_("異議 #%(id)s への判断を記録") % {"id": objection.pk}))


# Recipients, provision records and the data map (consent.provision) register their admins on import.
from consent.provision import admin as _provision_admin  # noqa: E402, F401  (registers its admins)

# The request desk's admin (開示等請求) registers itself on import.
from consent.requests import admin as request_desk_admin  # noqa: E402, F401
