"""The customer admin: list and search at a million rows, masked unless the user may see personal data,
and the page's status, anonymisation and erasure actions, each through its service."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import PAGE_VAR, SEARCH_VAR, ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm import services
from crm.admin.changelist import ADD_ALLOWED, SEARCH_COUNTS, IndexedSortChangeList, TeamListFilter
from crm.admin.display import (
    CLEAR_DISPLAY,
    PERSONAL,
    PhoneFormField,
    PhoneInput,
    age_band_label,
    clear_reader,
    column,
    field_label,
    fully_masked,
    masked_reader,
)
from crm.admin.mixins import (
    AccessLoggedAdminMixin,
    ScaleSafeAdmin,
    acting_user,
    admin_page,
    object_not_found_redirect,
)
from crm.models import Customer
from crm.permissions import can_view_pii, remember_team_ids, teams_open_to
from crm.prefectures import prefecture_choices
from crm.retention import selectors as retention_selectors
from crm.retention import services as retention_services
from crm.search_token import MAX_TERM_LENGTH, SEARCH_TOKEN_VAR, seal_search
from crm.selectors import customer_search_counted

# The list's personal columns: (slug, fields, heading). The name is one column, written as people write it
# (姓 名). A user without 'view personal data' gets only the columns that show them something: a column
# whose every field is masked in full ('****': member number, prefecture) is left out of their list.
LIST_COLUMNS: list[tuple[str, tuple[str, ...], Any]] = [
    ("member_no", ("member_no",), field_label("member_no")),
    ("name", ("family_name", "given_name"), _("氏名")),
    ("email", ("email",), field_label("email")),
    ("phone", ("phone",), field_label("phone")),
    ("prefecture", ("prefecture",), field_label("prefecture")),
]
LIST_ONLY = (
    "id",
    "team__name",
    "team__code",
    "status",
    "last_activity_at",
    *(name for _slug, names, _heading in LIST_COLUMNS for name in names),
)

FIELDSETS = [
    (_("基本情報"), {"fields": ["team", "status", "status_actions", "member_no", "external_id"]}),
    (_("氏名"), {"fields": ["family_name", "given_name", "family_name_kana", "given_name_kana"]}),
    (_("連絡先"), {"fields": ["email", "phone", "postal_code", "prefecture", "address"]}),
    (
        _("属性"),
        {
            "fields": [
                "birth_date",
                "gender",
                "preferences",
                "app_user_id",
                "device_id",
                "pos_card_no",
                "notes",
            ]
        },
    ),
    (
        _("取得の経緯（法第21条・第29条の記録事項）"),
        {"fields": ["collection_channel", "collected_at", "acquisition_note"]},
    ),
    (
        _("管理情報"),
        {
            "fields": [
                "age_band",
                "last_activity_at",
                "closed_at",
                "provision_stopped_at",
                "created_at",
                "updated_at",
            ]
        },
    ),
]


class CustomerAction:
    """An action of the customer page that changes what the record claims, through its service."""

    def __init__(self, slug: str, label: Any, explanation: Any, *, erasure: bool = False) -> None:
        self.slug = slug
        self.label = label
        self.explanation = explanation
        self.erasure = erasure  # crm.retention.services: "delete" through the one gate, legal holds apply

    @property
    def url_name(self) -> str:
        return "crm_customer_" + self.slug.replace("-", "_")


CUSTOMER_ACTIONS = {
    a.slug: a
    for a in (
        CustomerAction(
            "stop-use",
            _("利用停止（法第35条）"),
            _(
                "この顧客の個人データの利用を停止します。データは保持したまま、同意に基づく抽出や行動データの"
                "記録の対象から外れます。停止の理由がなくなれば「利用再開」で戻せます。"
            ),
        ),
        CustomerAction(
            "resume-use",
            _("利用再開"),
            _("利用停止を解除し、状態を「有効」に戻します。停止の理由がなくなったことを確かめてください。"),
        ),
        CustomerAction(
            "close",
            _("退会"),
            _(
                "退会として記録します。退会日時が記録され、保存期間ポリシー（退会からN日経過）の起算日になります。"
            ),
        ),
        CustomerAction(
            "anonymise",
            _("匿名化"),
            _(
                "氏名・連絡先などの識別子を消去し、生年月日は年代に、住所は都道府県にまとめます。"
                "購買と行動データは本人と結び付かない形で残ります。元に戻せません。"
            ),
            erasure=True,
        ),
        CustomerAction(
            "erase",
            _("消去"),
            _("この顧客の記録と、結び付いた個人データを消去します。元に戻せません。"),
            erasure=True,
        ),
    )
}


class ErasureReasonForm(forms.Form):
    """The ground of an erasure or anonymisation by a person, kept (as a code) in the tombstone and the audit
    entry. A choice, not free text: free text would carry personal data into the audit trail."""

    REASONS = [
        ("request", _("本人からの請求（法第35条、GDPR第17条）")),
        ("no_longer_needed", _("利用する必要がなくなった（法第22条）")),
        ("unlawful", _("不適正な取得・利用（法第35条第1項）")),
    ]
    reason = forms.ChoiceField(label=_("根拠"), choices=REASONS)


# The request whose customer page is being rendered: the status actions it offers depend on its user.
# A ContextVar, not an attribute of the (shared) ModelAdmin, so concurrent requests never mix.
_page_request: ContextVar[HttpRequest | None] = ContextVar("customer_page_request", default=None)


@admin.register(Customer)
class CustomerAdmin(AccessLoggedAdminMixin, ScaleSafeAdmin):
    """Customers: list and search at a million rows, masked unless the user may see personal data."""

    list_filter = (("status", admin.ChoicesFieldListFilter), TeamListFilter)
    search_fields = ("member_no",)  # any value shows the search box; get_search_results decides
    search_help_text = _(
        "メールアドレス・電話番号・会員番号・氏名（漢字またはフリガナ）で完全一致検索します。"
    )
    ordering = ("-id",)  # the primary key: a backward index scan that stops after one page
    # Only columns with an index behind them sort (ORDER BY col, id DESC — the admin appends the pk):
    # sorting by team, status or prefecture would sort the whole table on every click.
    sortable_by = ("last_activity_at",)
    list_select_related = ("team",)
    # The status is a fact about the data: shown, and changed only by the actions beside it (services).
    readonly_fields = (
        "status",
        "status_actions",
        "age_band",
        "created_at",
        "updated_at",
        "closed_at",
        "provision_stopped_at",
    )
    actions = None
    # Not the auto-discovered admin/crm/customer/change_list.html: another ModelAdmin of Customer (the stock
    # one of bench/admin_bench.py) must not pick up a search form that posts to CustomerAdmin's view.
    change_list_template = "admin/crm/customer_change_list.html"

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        remember_team_ids(request.user)
        token = _page_request.set(request)
        try:
            response = super().changeform_view(request, *args, **kwargs)
            if hasattr(response, "render"):
                response.render()  # while the request is set: status_actions reads it during rendering
            return response
        finally:
            _page_request.reset(token)

    # --- status and erasure: actions of the page, each through its service ------------------------------

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(self.customer_action_view)
        extra = [
            path(f"<path:object_id>/{a.slug}/", view, {"action": a.slug}, name=a.url_name)
            for a in CUSTOMER_ACTIONS.values()
        ]
        return extra + super().get_urls()

    def available_actions(self, request: HttpRequest, obj: Customer) -> list[str]:
        """The actions `request.user` may take on the customer in its current status."""
        out = []
        if obj.status != Customer.Status.ANONYMISED and services.may_change_status(request.user, obj.pk):
            if obj.status == Customer.Status.ACTIVE:
                out += ["stop-use", "close"]
            elif obj.status == Customer.Status.STOP_USE:
                out.append("resume-use")
        if Customer.objects.restrict(request.user, "delete").filter(pk=obj.pk).exists():
            if obj.status != Customer.Status.ANONYMISED:
                out.append("anonymise")
            out.append("erase")
        return out

    @admin.display(description=_("状態の変更"))
    def status_actions(self, obj: Customer | None) -> Any:
        request = _page_request.get()
        if request is None or obj is None or not obj.pk:
            return "-"
        slugs = self.available_actions(request, obj)
        if not slugs:
            return "-"
        return format_html_join(
            " ",
            '<a class="button{}" href="{}">{}</a>',
            (
                (
                    " crm-danger" if CUSTOMER_ACTIONS[s].erasure else "",
                    reverse(f"admin:{CUSTOMER_ACTIONS[s].url_name}", args=[quote(obj.pk)]),
                    CUSTOMER_ACTIONS[s].label,
                )
                for s in slugs
            ),
        )

    def customer_action_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        """The confirmation page of a status change, an anonymisation or an erasure (GET), and the action
        itself (POST), through crm.services / crm.retention.services. A customer the user may not view does
        not exist for them; one they may view but not act on is refused (403)."""
        spec = CUSTOMER_ACTIONS[action]
        customer = self.get_object(request, unquote(object_id))
        if customer is None:
            return object_not_found_redirect(request, self.opts, object_id)
        preview = None
        if spec.erasure:
            preview = retention_selectors.customer_erasure_preview(
                user=request.user, customer_id=customer.pk, action=action, as_of=timezone.now()
            )
            if preview is None:
                raise PermissionDenied
        elif not services.may_change_status(request.user, customer.pk):
            raise PermissionDenied
        change_url = reverse("admin:crm_customer_change", args=[quote(customer.pk)])
        if action not in self.available_actions(request, customer):
            self.message_user(
                request,
                gettext("現在の状態（%(status)s）では「%(action)s」は行えません。")
                % {"status": customer.get_status_display(), "action": spec.label},
                messages.WARNING,
            )
            return HttpResponseRedirect(change_url)
        form = ErasureReasonForm(request.POST or None) if spec.erasure else None
        if request.method == "POST" and (form is None or form.is_valid()):
            reason = form.cleaned_data["reason"] if form is not None else ""
            return self._customer_action_perform(request, customer, action, reason, change_url)
        return admin_page(
            self,
            request,
            "admin/crm/customer_action.html",
            gettext("%(action)s: %(customer)s") % {"action": spec.label, "customer": customer},
            original=customer,
            action=spec,
            preview=preview,
            form=form,
            change_url=change_url,
        )

    def _customer_action_perform(
        self, request: HttpRequest, customer: Customer, action: str, reason: str, change_url: str
    ) -> HttpResponse:
        status_services = {
            "stop-use": (services.customer_stop_use, _("利用を停止しました（法第35条）。")),
            "resume-use": (services.customer_resume_use, _("利用を再開しました。")),
            "close": (services.customer_close, _("退会として記録しました。")),
        }
        if action in status_services:
            status_service, done = status_services[action]
            try:
                status_service(customer=customer, actor=acting_user(request))
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)
            else:
                self.message_user(request, done, messages.SUCCESS)
            return HttpResponseRedirect(change_url)
        erase = action == "erase"
        service = retention_services.customer_erase if erase else retention_services.customer_anonymise
        try:
            out = service(customer_ids=[customer.pk], reason=f"admin:{reason}", actor=acting_user(request))
        except retention_services.ErasePermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        names = {"customer": customer}
        if out.held:
            held = gettext("リーガルホールドが有効なため、%(customer)s には何もしていません。")
            self.message_user(request, held % names, messages.WARNING)
        elif not out.acted:
            failed = gettext("%(customer)s を処理できませんでした。何も変更していません。")
            self.message_user(request, failed % names, messages.ERROR)
        elif erase:
            self.message_user(request, gettext("%(customer)s を消去しました。") % {"customer": customer})
            return HttpResponseRedirect(reverse("admin:crm_customer_changelist"))
        else:
            self.message_user(request, gettext("%(customer)s を匿名化しました。") % {"customer": customer})
        return HttpResponseRedirect(change_url)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        remember_team_ids(request.user)
        if request.method == "POST" and SEARCH_VAR in request.POST:
            return self._search_redirect(request)
        return super().changelist_view(request, extra_context)

    def _search_redirect(self, request: HttpRequest) -> HttpResponse:
        """The search form posts its term (crm.search_token): the list is shown at `?qt=<token>`, with the
        form's other parameters (filters, ordering), so the term is in no URL."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        term = request.POST[SEARCH_VAR].strip()
        if len(term) > MAX_TERM_LENGTH:
            self.message_user(
                request,
                _("検索語は%(n)d文字以内で入力してください。") % {"n": MAX_TERM_LENGTH},
                messages.ERROR,
            )
            term = ""
        skip = {SEARCH_VAR, SEARCH_TOKEN_VAR, PAGE_VAR, "csrfmiddlewaretoken"}
        params = {k: v for k, v in request.POST.items() if k not in skip}
        if term:
            params[SEARCH_TOKEN_VAR] = seal_search(term)
        return HttpResponseRedirect(f"{request.path}?{urlencode(params)}" if params else request.path)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return IndexedSortChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[Customer]:
        qs = Customer.objects.restrict(request.user, "view").select_related("team")
        match = getattr(request, "resolver_match", None)
        if match and match.url_name == "crm_customer_changelist":
            qs = qs.only(*LIST_ONLY)
        return qs

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        pii = can_view_pii(request.user)
        cols = [
            column(slug, names, heading, pii)
            for slug, names, heading in LIST_COLUMNS
            if pii or not all(fully_masked(name) for name in names)
        ]
        return ["__str__", *cols, "team", "status", "last_activity_at"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Customer], search_term: str
    ) -> tuple[QuerySet[Customer], bool]:
        if not search_term.strip():
            return queryset, False
        # Exact search: the blind indexes pick a handful of the user's rows; their number is the count.
        queryset, count = customer_search_counted(queryset, search_term)
        if count is not None:
            SEARCH_COUNTS[request] = count
        return queryset, False

    def get_fieldsets(self, request: HttpRequest, obj: Customer | None = None) -> Any:
        if obj is None:
            # A new customer is 有効; its status changes later, through the page's actions.
            return [(t, {"fields": [f for f in o["fields"] if f != "status_actions"]}) for t, o in FIELDSETS]
        pii = can_view_pii(request.user)
        changer = self.has_change_permission(request, obj)

        def shown(name: str) -> str:
            if name in PERSONAL and not pii:
                return f"masked_{name}"
            if name in CLEAR_DISPLAY and not changer:
                return f"shown_{name}"
            return "shown_age_band" if name == "age_band" else name

        return [(title, {"fields": [shown(f) for f in opts["fields"]]}) for title, opts in FIELDSETS]

    @admin.display(description=Customer._meta.get_field("age_band").verbose_name)
    def shown_age_band(self, obj: Customer) -> str:
        return age_band_label(obj.age_band) or "-"

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "prefecture":
            # A choice of names (the column holds the JIS code); built per request, in the user's language.
            return forms.TypedChoiceField(
                label=db_field.verbose_name,
                required=False,
                choices=[("", "---------"), *prefecture_choices()],
                empty_value="",
            )
        if db_field.name == "phone":
            kwargs.update(form_class=PhoneFormField, widget=PhoneInput)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Customer | None = None) -> Any:
        ro = list(self.readonly_fields)
        if obj is not None:
            # Written when the data was acquired and by activity, not by hand: the admin's seconds-only
            # inputs rewrote them on every save (a spurious audit diff), and an editable last activity
            # would move retention deadlines.
            ro += ["collected_at", "last_activity_at"]
        if obj is not None:
            ro += ["shown_age_band", *(f"shown_{f}" for f in CLEAR_DISPLAY)]
        if obj is not None and not can_view_pii(request.user):
            ro += [f"masked_{f}" for f in PERSONAL]
        if obj is not None and not self.has_change_permission(request, obj):
            ro += [f for _t, opts in FIELDSETS for f in opts["fields"] if f not in PERSONAL]
        return ro

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "team":
            kwargs["queryset"] = teams_open_to(request.user, "change")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_view_permission(self, request: HttpRequest, obj: Customer | None = None) -> bool:
        if not super().has_view_permission(request, obj):
            return False
        return obj is None or Customer.objects.restrict(request.user, "view").filter(pk=obj.pk).exists()

    def has_change_permission(self, request: HttpRequest, obj: Customer | None = None) -> bool:
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or Customer.objects.restrict(request.user, "change").filter(pk=obj.pk).exists()

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Asked several times per page (sidebar, changelist, buttons): one team query per request.
        cached = ADD_ALLOWED.get(request)
        if cached is None:
            cached = ADD_ALLOWED[request] = (
                super().has_add_permission(request) and teams_open_to(request.user, "change").exists()
            )
        return cached

    def has_delete_permission(self, request: HttpRequest, obj: Customer | None = None) -> bool:
        # Never through the admin delete view (it renders every cascaded row); erasure is a service.
        return False

    def save_model(self, request: HttpRequest, obj: Customer, form: Any, change: bool) -> None:
        services.customer_save(customer=obj, actor=acting_user(request))


# Masked readers for every personal field, for the change page of users without the permission.
for _name in PERSONAL:
    setattr(CustomerAdmin, f"masked_{_name}", masked_reader(_name))
# Clear values shown read-only, formatted (users who see personal data but do not change the customer).
for _name, _shown in CLEAR_DISPLAY.items():
    setattr(CustomerAdmin, f"shown_{_name}", clear_reader(_name, _shown))
