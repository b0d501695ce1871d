"""The admin: presentation only. Reads go through restrict(), writes through crm.services."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from html import escape as _escape
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.templatetags.admin_list import _coerce_field_name
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import display_for_field, display_for_value, quote, unquote
from django.contrib.admin.views.main import (
    ORDER_VAR,
    PAGE_VAR,
    SEARCH_VAR,
    ChangeList,
    ChangeListSearchForm,
)
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone, translation
from django.utils.formats import get_format
from django.utils.html import format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm import field_classes as _field_classes  # noqa: F401  (fills REGISTRY, see PERSONAL)
from crm import services
from crm.classification import REGISTRY, format_phone, mask_value
from crm.models import AuditEntry, Customer, Team, TeamMembership
from crm.paginators import EstimatedCountPaginator
from crm.permissions import can_view_pii, remember_team_ids, teams_open_to
from crm.prefectures import prefecture_choices, prefecture_name
from crm.retention import selectors as retention_selectors
from crm.retention import services as retention_services
from crm.search_token import MAX_TERM_LENGTH, SEARCH_TOKEN_VAR, open_search, seal_search
from crm.selectors import customer_search, viewable_team_choices

admin.site.site_header = _("顧客管理システム（個人情報保護法・GDPR対応）")
admin.site.site_title = _("顧客管理")
admin.site.index_title = _("管理メニュー")

CUSTOMER = Customer._meta.label
# The admin is imported (autodiscover) before CrmConfig.ready() loads the classifications, so crm.admin
# imports crm.field_classes itself: without it this list came out empty and the change page showed and
# edited every personal field in clear for users without 'view personal data'.
PERSONAL = REGISTRY.personal_fields(CUSTOMER)
if not PERSONAL:
    raise RuntimeError("crm.Customer has no personal fields in the registry; refusing to show them unmasked.")


class _RenderedOnceMedia(forms.Media):
    """The admin's own scripts, rendered to HTML once per process: ModelAdmin.media builds a new Media on
    every request, and rendering it merges the lists (a topological sort) and resolves each static URL."""

    @functools.cached_property
    def _html(self) -> SafeString:
        return super().render()

    def render(self) -> SafeString:
        return self._html

    def __getitem__(self, name: str) -> forms.Media:
        # `{{ media.js }}` (what the changelist template prints) asks for a part: also rendered once.
        parts = self.__dict__.setdefault("_parts", {})
        if name not in parts:
            parts[name] = _RenderedOnceMedia(**{name: getattr(self, "_" + name)})
        return parts[name]


@functools.cache
def _admin_media(debug: bool) -> forms.Media:
    stock = admin.ModelAdmin.media.fget(None)  # type: ignore[attr-defined]  # reads only settings.DEBUG
    return _RenderedOnceMedia(css=stock._css, js=stock._js)


class ScaleSafeAdmin(admin.ModelAdmin):
    """Admin defaults for tables with millions of rows (see pitfalls: Django admin at 1–10 M rows)."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50

    @property
    def media(self) -> forms.Media:
        return _admin_media(settings.DEBUG)


class AccessLoggedAdminMixin:
    """The access log of the admins of personal data (customers, 要配慮 records). Opening a record's page
    writes django-auditlog's ACCESS entry (who looked at which record, when, from where), and so does every
    page of the list (auditlog logs single-object views only). A refused page writes none."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        response = super().changelist_view(request, extra_context)  # type: ignore[misc]
        cl = getattr(response, "context_data", None) and response.context_data.get("cl")
        if cl is not None:
            # After rendering: the rows were read by then (no second query), and a page that failed to
            # render showed nobody.
            response.add_post_render_callback(lambda _r: self._record_list_access(request, cl))
        return response

    def _record_list_access(self, request: HttpRequest, cl: ChangeList) -> None:
        """The ids shown, whether in clear, whether searched and with which filters (never the term)."""
        ids = [obj.pk for obj in cl.result_list]
        if not ids and not cl.query:
            return
        allowed = {p for spec in cl.filter_specs for p in spec.expected_parameters()}
        services.list_access_record(
            model=cl.model,
            object_ids=ids,
            actor=request.user,
            clear=can_view_pii(request.user),
            searched=bool(cl.query),
            filters={k: str(v) for k, v in cl.params.items() if k in allowed or k == ORDER_VAR},
            page=cl.page_num,
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        if obj is not None and obj.pk:
            services.access_record(instance=obj, actor=request.user)
        return super().render_change_form(request, context, add, change, form_url, obj)  # type: ignore[misc]


class ReadOnlyAdminMixin:
    """A record nobody edits through the admin, superusers included (trails, proofs, derived state):
    no add, change or delete, every field shown read-only."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        names = [f.name for f in self.model._meta.fields]  # type: ignore[attr-defined]
        return [*self.readonly_fields, *(n for n in names if n not in self.readonly_fields)]  # type: ignore[attr-defined]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def object_not_found_redirect(request: HttpRequest, opts: Any, object_id: Any) -> HttpResponseRedirect:
    """A record that does not exist for this user (absent, or outside their teams): the admin index with
    the message Django's own change page gives, for every admin page of a record (change page, consent
    history, status and erasure pages), so that no page tells another team's record from a missing one."""
    message = gettext("%(name)s with ID “%(key)s” doesn’t exist. Perhaps it was deleted?") % {
        "name": opts.verbose_name,
        "key": object_id,
    }
    messages.warning(request, message)
    return HttpResponseRedirect(reverse("admin:index"))


class TokenSearchForm(ChangeListSearchForm):
    """The list's search form, reading the term from `?qt=` (crm.search_token) when `?q=` is not given."""

    def __init__(self, data: Any, *args: Any, **kwargs: Any) -> None:
        self.token_refused = False
        token = data.get(SEARCH_TOKEN_VAR) if data is not None else None
        if token and not data.get(SEARCH_VAR):
            term = open_search(token)
            self.token_refused = term is None
            data = data.copy()
            data[SEARCH_VAR] = term or ""
        super().__init__(data, *args, **kwargs)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.token_refused:
            raise forms.ValidationError(
                _("検索条件の有効期限が切れたか、無効です。もう一度検索してください。"), code="search_token"
            )
        return cleaned


class IndexedSortChangeList(ChangeList):
    """A changelist that sorts only by `sortable_by`, whatever `?o=` asks (the admin hides the other headers'
    sort links but would still honour a hand-written URL, sorting a million rows), and that takes the count
    of a short first page from its rows."""

    search_form_class = TokenSearchForm

    def get_filters_params(self, params: Any = None) -> Any:
        lookup_params = super().get_filters_params(params)
        lookup_params.pop(SEARCH_TOKEN_VAR, None)  # the search, not a filter
        return lookup_params

    def get_ordering_field(self, field_name: Any) -> Any:
        if field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)

    def get_results(self, request: HttpRequest) -> None:
        """Django's get_results, but the first page is read before anything is counted: a page with fewer
        rows than list_per_page holds every match, so its count is exact and no count runs at all (an
        exact search, a small team); a full page takes the paginator's count (crm.paginators), and is not
        read a second time."""
        if self.page_num != 1 or self.show_all or self.model_admin.show_full_result_count:
            super().get_results(request)
            return
        paginator = self.model_admin.get_paginator(request, self.queryset, self.list_per_page)
        paginator.count_first = bool(self.query)  # an exact search: few rows, count before estimating
        rows = list(self.queryset[: self.list_per_page + 1])
        if len(rows) <= self.list_per_page:
            paginator.__dict__["count"] = len(rows)  # the cached_property: exact, nothing to count
        # Never fewer than the rows seen: a full page means more than one page, whatever was estimated.
        count = paginator.__dict__["count"] = max(paginator.count, len(rows))
        self.result_count = count
        self.show_full_result_count = False
        self.show_admin_actions = True  # as Django's, when entries are not counted in full
        self.full_result_count = None
        self.result_list = rows[: self.list_per_page]
        self.can_show_all = count <= self.list_max_show_all
        self.multi_page = count > self.list_per_page
        self.paginator = paginator


class TeamListFilter(admin.SimpleListFilter):
    """Teams the user may see (a small table), instead of RelatedFieldListFilter's whole-table load."""

    title = _("担当チーム")
    parameter_name = "team"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[Any, Any]]:
        return [(str(pk), name) for pk, name in viewable_team_choices(request.user)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Customer]) -> QuerySet[Customer]:
        value = self.value()
        return queryset.filter(team_id=int(value)) if value and value.isdigit() else queryset


def _age_band_label(value: str) -> str:
    """An anonymised age band as stored ('30代', '90歳以上', '10歳未満') in the current language."""
    import re

    for pattern, text in (
        (r"(\d+)代", gettext("%(age)d代")),
        (r"(\d+)歳以上", gettext("%(age)d歳以上")),
        (r"(\d+)歳未満", gettext("%(age)d歳未満")),
    ):
        match = re.fullmatch(pattern, value or "")
        if match:
            return text % {"age": int(match.group(1))}
    return value


# Clear values written the way people read them, the same in lists, on the page and masked (prefecture
# by name, not its JIS code; phone numbers national for Japan, E.164 abroad).
CLEAR_DISPLAY: dict[str, Callable[[Any], Any]] = {"prefecture": prefecture_name, "phone": format_phone}


def _column(name: str, label: str, pii: bool) -> Callable[[Customer], Any]:
    shown = CLEAR_DISPLAY.get(name)

    def show(obj: Customer) -> Any:
        value = getattr(obj, name)
        if not pii:
            return mask_value(CUSTOMER, name, value)
        return shown(value) if shown is not None and value else value

    show.short_description = label  # type: ignore[attr-defined]
    show.__name__ = f"col_{name}"
    return show


def _masked_reader(name: str) -> Callable[[Any, Customer], Any]:
    def read(self: Any, obj: Customer) -> Any:
        shown = mask_value(CUSTOMER, name, getattr(obj, name)) if obj and obj.pk else None
        # The admin prints a callable's None as "None": an empty value is "-" as for a field.
        return "-" if shown is None or shown == "" or shown == {} else shown

    read.short_description = Customer._meta.get_field(name).verbose_name  # type: ignore[attr-defined]
    return read


def _clear_reader(name: str, shown: Callable[[Any], Any]) -> Callable[[Any, Customer], Any]:
    """A clear value, read-only and written as CLEAR_DISPLAY says (for users who see but do not change)."""

    def read(self: Any, obj: Customer) -> Any:
        value = getattr(obj, name) if obj and obj.pk else None
        return shown(value) if value else "-"

    read.short_description = Customer._meta.get_field(name).verbose_name  # type: ignore[attr-defined]
    return read


class PhoneInput(admin.widgets.AdminTextInputWidget):
    """The phone input shows the stored E.164 number as people write it; Customer.normalise() stores the
    E.164 form again on save."""

    def format_value(self, value: Any) -> Any:
        return format_phone(value) if value else super().format_value(value)


class PhoneFormField(forms.CharField):
    """Changed only when the number is: '090-1234-5678' posted back for a stored '+819012345678' is the
    same number (no "changed 電話番号" in the page's history for a form saved as it was shown)."""

    def has_changed(self, initial: Any, data: Any) -> bool:
        from crm.crypto import normalise_phone

        posted = (data or "").strip()
        return (normalise_phone(posted) or posted) != (initial or "") if posted else bool(initial)


# Django date-format characters this fast path writes itself, each exactly as django.utils.dateformat does.
_DATE_PARTS: dict[str, Callable[[Any], str]] = {
    "Y": lambda d: f"{d.year:04d}",
    "y": lambda d: f"{d.year % 100:02d}",
    "m": lambda d: f"{d.month:02d}",
    "n": lambda d: str(d.month),
    "d": lambda d: f"{d.day:02d}",
    "j": lambda d: str(d.day),
    "H": lambda d: f"{d.hour:02d}",
    "G": lambda d: str(d.hour),
    "i": lambda d: f"{d.minute:02d}",
    "s": lambda d: f"{d.second:02d}",
}


# Every character django.utils.dateformat reads as a format character (its re_formatchars).
_DJANGO_FORMAT_CHARS = frozenset("aAbBcdDeEfFgGhHiIjlLmMnNoOPrsStTUuwWyYzZ")


@functools.lru_cache(maxsize=32)
def compiled_date_format(fmt: str) -> Callable[[Any], str] | None:
    """A function writing a datetime in Django format `fmt` (e.g. Japanese 'Y年n月j日G:i'), or None when
    `fmt` uses a character not handled here (month names, am/pm, …): the caller then uses Django's own
    formatting. django.utils.dateformat re-parses the format and resolves it character by character for
    every value, a tenth of the list page's time at 50 rows; tests compare the two."""
    if "\\\\" in fmt:  # Django's own parsing of a doubled backslash is its own; leave it to Django
        return None
    parts: list[Callable[[Any], str] | str] = []
    escaped = False
    for char in fmt:
        if escaped:
            parts.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in _DATE_PARTS:
            parts.append(_DATE_PARTS[char])
        elif char in _DJANGO_FORMAT_CHARS:
            return None
        else:
            parts.append(char)
    if escaped:
        return None

    def write(value: Any) -> str:
        return "".join(part if type(part) is str else part(value) for part in parts)  # type: ignore[operator]

    return write


@functools.lru_cache(maxsize=64)
def _choice_labels(field: models.Field, language: str | None) -> dict[Any, str]:
    """A choice field's labels as display_for_field shows them, escaped, per language (built once)."""
    return {value: _escape(str(label)) for value, label in field.flatchoices}


def _cell_renderer(name: Any, css: str, empty: str) -> Callable[[Customer], str]:
    """One column of CustomerAdmin.result_rows: the value as Django's admin displays it, escaped
    (html.escape of str(): what django.utils.html.escape does, without its lazy-string wrapper per cell)."""
    empty_html = _escape(empty)
    if callable(name):

        def show(obj: Customer) -> str:
            value = name(obj)
            if type(value) is str:  # the masked and clear values: display_for_value's own rule for text
                shown = _escape(value) if value.strip() else empty_html
            else:
                shown = _escape(str(display_for_value(value, empty)))
            return f'<td class="{css}">{shown}</td>'

        return show
    field = Customer._meta.get_field(name)
    if field.many_to_one:

        def show_related(obj: Customer) -> str:
            related = getattr(obj, field.name)
            return f'<td class="{css} nowrap">{empty_html if related is None else _escape(str(related))}</td>'

        return show_related
    if getattr(field, "flatchoices", None):
        labels = _choice_labels(field, translation.get_language())

        def show_choice(obj: Customer) -> str:
            return f'<td class="{css}">{labels.get(getattr(obj, field.attname), empty_html)}</td>'

        return show_choice
    if isinstance(field, models.DateTimeField):
        fast = compiled_date_format(str(get_format("DATETIME_FORMAT"))) if settings.USE_TZ else None
        if fast is not None:
            zone = timezone.get_current_timezone()

            def show_datetime(obj: Customer) -> str:
                # display_for_field of an aware datetime: localtime in the current zone, then the format.
                value = getattr(obj, field.attname)
                if value is None:
                    return f'<td class="{css} nowrap">{empty_html}</td>'
                local = value if value.tzinfo is None else value.astimezone(zone)
                return f'<td class="{css} nowrap">{_escape(fast(local))}</td>'

            return show_datetime

        def show_field(obj: Customer) -> str:
            value = display_for_field(getattr(obj, field.attname), field, empty)
            return f'<td class="{css} nowrap">{_escape(str(value))}</td>'

        return show_field
    raise ImproperlyConfigured(f"CustomerAdmin.result_rows cannot display the column {name!r}")


LIST_COLUMNS = ["member_no", "family_name", "given_name", "email", "phone", "prefecture"]
LIST_ONLY = ("id", "team__name", "team__code", "status", "last_activity_at", *LIST_COLUMNS)

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
    (_("管理情報"), {"fields": ["age_band", "last_activity_at", "closed_at", "created_at", "updated_at"]}),
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
    readonly_fields = ("status", "status_actions", "age_band", "created_at", "updated_at", "closed_at")
    actions = None
    # Not the auto-discovered admin/crm/customer/change_list.html: another ModelAdmin of Customer (the stock
    # one of bench/admin_bench.py) must not pick up a template that calls result_rows.
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
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("%(action)s: %(customer)s") % {"action": spec.label, "customer": customer},
            "opts": self.opts,
            "original": customer,
            "action": spec,
            "preview": preview,
            "form": form,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/crm/customer_action.html", context)

    def _customer_action_perform(
        self, request: HttpRequest, customer: Customer, action: str, reason: str, change_url: str
    ) -> HttpResponse:
        status_services = {
            "stop-use": (services.customer_stop_use, _("利用を停止しました（法第35条）。")),
            "resume-use": (services.customer_resume_use, _("利用を再開しました。")),
            "close": (services.customer_close, _("退会として記録しました。")),
        }
        if action in status_services:
            service, done = status_services[action]
            try:
                service(customer=customer, actor=request.user)
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)
            else:
                self.message_user(request, done, messages.SUCCESS)
            return HttpResponseRedirect(change_url)
        erase = action == "erase"
        service = retention_services.customer_erase if erase else retention_services.customer_anonymise
        try:
            out = service(customer_ids=[customer.pk], reason=f"admin:{reason}", actor=request.user)
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
        labels = {n: Customer._meta.get_field(n).verbose_name for n in LIST_COLUMNS}
        cols = [_column(n, labels[n], pii) for n in LIST_COLUMNS]
        return ["__str__", *cols, "team", "status", "last_activity_at"]

    def result_rows(self, cl: ChangeList) -> Iterator[SafeString]:
        """The changelist rows, each as one HTML string: what Django's items_for_result yields cell by cell
        (tests/crm/test_admin_rows.py compares the two), without its per-cell field lookups and format_html.

        Handles the columns get_list_display returns: the linked first column, callables, a foreign key,
        choices and datetimes; any other column is refused rather than shown differently.
        """
        empty = self.get_empty_value_display()
        marker = "0000000000"
        url = reverse(f"{self.admin_site.name}:crm_customer_change", args=[marker])
        url = add_preserved_filters({"preserved_filters": cl.preserved_filters, "opts": cl.opts}, url)
        head, tail = url.split(marker, 1)
        cells: list[Callable[[Customer], str]] = []
        for index, name in enumerate(cl.list_display[1:], start=1):
            css = f"field-{_coerce_field_name(name, index)}"
            cells.append(_cell_renderer(name, css, empty))
        link_css = f"field-{_coerce_field_name(cl.list_display[0], 0)}"
        for obj in cl.result_list:
            parts = [f'<th class="{link_css}"><a href="{head}{obj.pk}{tail}">{_escape(str(obj))}</a></th>']
            parts += [render(obj) for render in cells]
            yield mark_safe("".join(parts))  # noqa: S308  (every value above went through _escape())

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Customer], search_term: str
    ) -> tuple[QuerySet[Customer], bool]:
        if not search_term.strip():
            return queryset, False
        # Exact search: the blind indexes pick a handful of rows; the team scope just filters them.
        return customer_search(queryset, search_term), False

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
        return _age_band_label(obj.age_band) or "-"

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
        cached = getattr(request, "_crm_customer_can_add", None)
        if cached is None:
            cached = super().has_add_permission(request) and teams_open_to(request.user, "change").exists()
            request._crm_customer_can_add = cached  # type: ignore[attr-defined]
        return cached

    def has_delete_permission(self, request: HttpRequest, obj: Customer | None = None) -> bool:
        # Never through the admin delete view (it renders every cascaded row); erasure is a service.
        return False

    def save_model(self, request: HttpRequest, obj: Customer, form: Any, change: bool) -> None:
        services.customer_save(customer=obj, actor=request.user)


# Masked readers for every personal field, for the change page of users without the permission.
for _name in PERSONAL:
    setattr(CustomerAdmin, f"masked_{_name}", _masked_reader(_name))
# Clear values shown read-only, formatted (users who see personal data but do not change the customer).
for _name, _shown in CLEAR_DISPLAY.items():
    setattr(CustomerAdmin, f"shown_{_name}", _clear_reader(_name, _shown))


class MembershipInline(admin.TabularInline):
    model = TeamMembership
    extra = 0
    can_delete = False
    readonly_fields = ("user", "role", "created_at")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    """Teams (business units). Memberships are managed on their own page, through services."""

    list_display = ("code", "name", "created_at")
    search_fields = ("code", "name")
    inlines = [MembershipInline]

    def has_delete_permission(self, request: HttpRequest, obj: Team | None = None) -> bool:
        return False


@admin.register(TeamMembership)
class TeamMembershipAdmin(admin.ModelAdmin):
    """Who belongs to which team; saving grants the team object permissions (crm.services)."""

    list_display = ("team", "user", "role", "created_at")
    list_filter = ("role",)
    autocomplete_fields = ("team",)
    raw_id_fields = ("user",)

    def save_model(self, request: HttpRequest, obj: TeamMembership, form: Any, change: bool) -> None:
        saved = services.team_member_add(team=obj.team, user=obj.user, role=obj.role, actor=request.user)
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: TeamMembership) -> None:
        services.team_member_remove(membership=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[TeamMembership]) -> None:
        for membership in queryset:
            services.team_member_remove(membership=membership, actor=request.user)


if admin.site.is_registered(AuditEntry):
    admin.site.unregister(AuditEntry)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, ScaleSafeAdmin):
    """The audit trail: read-only for everyone, superusers included. Edits are also caught by the chain."""

    list_display = (
        "chain_seq",
        "timestamp",
        "action",
        "content_type",
        "object_pk",
        "object_repr",
        "actor",
        "remote_addr",
    )
    list_filter = ("action",)
    search_fields = ("object_pk",)
    ordering = ("-chain_seq",)
    list_select_related = ("content_type", "actor")
    actions = None

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        term = search_term.strip()
        return (queryset.filter(object_pk=term), False) if term else (queryset, False)

    # auditlog's labels that cannot be shown as they are: serialized_data has no verbose name (its label was
    # the untranslatable "serialized data"), and changes_text has the same label as changes ("change
    # message", printed twice). Shown through labelled readers, without a migration of the fields.
    RELABELLED = {"serialized_data": "serialized_data_shown", "changes_text": "changes_text_shown"}

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = [self.RELABELLED.get(f, f) for f in super().get_fields(request, obj)]
        return list(dict.fromkeys(fields))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [*super().get_readonly_fields(request, obj), *self.RELABELLED.values()]

    @admin.display(description=_("Serialized data"))
    def serialized_data_shown(self, obj: AuditEntry) -> Any:
        return obj.serialized_data if obj.serialized_data is not None else "-"

    @admin.display(description=_("変更内容（テキスト）"))
    def changes_text_shown(self, obj: AuditEntry) -> Any:
        return obj.changes_text or "-"


from crm import beat_admin as _beat_admin  # noqa: E402,F401
from crm.integrations import admin as _integrations_admin  # noqa: E402,F401
from crm.retention import admin as _retention_admin  # noqa: E402,F401
from crm.signin import admin as _signin_admin  # noqa: E402,F401
