"""The admin: presentation only. Reads go through restrict(), writes through crm.services."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from html import escape as _escape
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.templatetags.admin_list import _coerce_field_name
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import display_for_field, display_for_value
from django.contrib.admin.views.main import (
    ORDER_VAR,
    PAGE_VAR,
    SEARCH_VAR,
    ChangeList,
    ChangeListSearchForm,
)
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import get_format
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _

from crm import field_classes as _field_classes  # noqa: F401  (fills REGISTRY, see PERSONAL)
from crm import services
from crm.classification import REGISTRY, mask_value
from crm.models import AuditEntry, Customer, Team, TeamMembership
from crm.paginators import EstimatedCountPaginator
from crm.permissions import can_view_pii, preload_request_team_ids, team_ids_for, teams_for
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


def _column(name: str, label: str, pii: bool) -> Callable[[Customer], Any]:
    def show(obj: Customer) -> Any:
        value = getattr(obj, name)
        return value if pii else mask_value(CUSTOMER, name, value)

    show.short_description = label  # type: ignore[attr-defined]
    show.__name__ = f"col_{name}"
    return show


def _masked_reader(name: str) -> Callable[[Any, Customer], Any]:
    def read(self: Any, obj: Customer) -> Any:
        return mask_value(CUSTOMER, name, getattr(obj, name)) if obj and obj.pk else "-"

    read.short_description = Customer._meta.get_field(name).verbose_name  # type: ignore[attr-defined]
    return read


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
    (_("基本情報"), {"fields": ["team", "status", "member_no", "external_id"]}),
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
    readonly_fields = ("age_band", "created_at", "updated_at", "closed_at")
    actions = None
    # Not the auto-discovered admin/crm/customer/change_list.html: another ModelAdmin of Customer (the stock
    # one of bench/admin_bench.py) must not pick up a template that calls result_rows.
    change_list_template = "admin/crm/customer_change_list.html"

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        preload_request_team_ids(request.user)
        return super().changeform_view(request, *args, **kwargs)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        preload_request_team_ids(request.user)
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
        if obj is None or can_view_pii(request.user):
            return FIELDSETS
        return [
            (title, {"fields": [f"masked_{f}" if f in PERSONAL else f for f in opts["fields"]]})
            for title, opts in FIELDSETS
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Customer | None = None) -> Any:
        ro = list(self.readonly_fields)
        if obj is not None:
            # Written when the data was acquired and by activity, not by hand: the admin's seconds-only
            # inputs rewrote them on every save (a spurious audit diff), and an editable last activity
            # would move retention deadlines.
            ro += ["collected_at", "last_activity_at"]
        if obj is not None and not can_view_pii(request.user):
            ro += [f"masked_{f}" for f in PERSONAL]
        if obj is not None and not self.has_change_permission(request, obj):
            ro += [f for _t, opts in FIELDSETS for f in opts["fields"] if f not in PERSONAL]
        return ro

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "team" and not request.user.has_perm("crm.change_all_customers"):
            kwargs["queryset"] = teams_for(request.user, "change")
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
            cached = super().has_add_permission(request) and (
                request.user.has_perm("crm.change_all_customers")
                or bool(team_ids_for(request.user, "change"))
            )
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


from crm.integrations import admin as _integrations_admin  # noqa: E402,F401
from crm.retention import admin as _retention_admin  # noqa: E402,F401
from crm.signin import admin as _signin_admin  # noqa: E402,F401
