"""The customer list at a million rows: the search term read from its sealed token, sorting only by indexed
columns, the first page counted from its own rows, and a team filter of the user's teams."""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import SEARCH_VAR, ChangeList, ChangeListSearchForm
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from crm.models import Customer
from crm.paginators import EstimatedCountPaginator
from crm.search_token import SEARCH_TOKEN_VAR, open_search
from crm.selectors import viewable_team_choices


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
        cleaned = super().clean() or {}
        if self.token_refused:
            raise forms.ValidationError(
                _("検索条件の有効期限が切れたか、無効です。もう一度検索してください。"), code="search_token"
            )
        return cleaned


# An exact search's number of matches, per request: the model admin's get_search_results puts it here (from
# crm.selectors.customer_search_counted, which found exactly those rows) and the changelist of the same
# request takes it as its count instead of counting the same rows again.
SEARCH_COUNTS: WeakKeyDictionary[HttpRequest, int] = WeakKeyDictionary()
# Whether the request's user may add a customer (a team open to them): the admin asks several times per page
# (sidebar, changelist, buttons), the team query runs once per request.
ADD_ALLOWED: WeakKeyDictionary[HttpRequest, bool] = WeakKeyDictionary()


class IndexedSortChangeList(ChangeList):
    """A changelist that sorts only by `sortable_by`, whatever `?o=` asks (the admin hides the other headers'
    sort links but would still honour a hand-written URL, sorting a million rows), and that takes the count
    of a short first page from its rows."""

    search_form_class = TokenSearchForm
    search_count: int | None = None  # an exact search's matches (SEARCH_COUNTS), when known

    def get_filters_params(self, params: Any = None) -> Any:
        lookup_params = super().get_filters_params(params)
        lookup_params.pop(SEARCH_TOKEN_VAR, None)  # the search, not a filter
        return lookup_params

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        SEARCH_COUNTS.pop(request, None)
        qs = super().get_queryset(request, exclude_parameters)
        # The list's own queryset, not a facet's (which leaves a filter out, so matches more rows).
        if exclude_parameters is None:
            self.search_count = SEARCH_COUNTS.pop(request, None)
        return qs

    def get_ordering_field(self, field_name: Any) -> Any:
        if field_name not in (self.sortable_by or ()):
            return None
        return super().get_ordering_field(field_name)

    def get_results(self, request: HttpRequest) -> None:
        """Django's get_results, but the first page is read before anything is counted: a page with fewer
        rows than list_per_page holds every match, so its count is exact and no count runs at all (an
        exact search, a small team); a full page of an exact search takes the search's own number of matches
        (SEARCH_COUNTS), any other full page the paginator's count (crm.paginators); the page is not read a
        second time."""
        if self.page_num != 1 or self.show_all or self.model_admin.show_full_result_count:
            super().get_results(request)
            return
        paginator = self.model_admin.get_paginator(request, self.queryset, self.list_per_page)
        if not isinstance(paginator, EstimatedCountPaginator):
            super().get_results(request)
            return
        paginator.count_first = bool(self.query)  # an exact search: few rows, count before estimating
        rows = list(self.queryset[: self.list_per_page + 1])
        if self.search_count is not None:
            paginator.__dict__["count"] = self.search_count  # the search found exactly these: no count
        elif len(rows) <= self.list_per_page:
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
