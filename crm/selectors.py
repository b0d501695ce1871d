"""Reads of the customer record. Everything here starts from `Customer.objects.restrict(user, action)`."""

from __future__ import annotations

import copy
import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import EmptyResultSet
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL

from crm import rawsql
from crm.crypto import email_index, name_index, phone_index
from crm.models import Customer, CustomerQuerySet
from crm.permissions import REMEMBERED_TEAM_IDS, TEAMS, scope_kind, teams_open_to

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

_MEMBER_NO = re.compile(r"^[A-Za-z0-9\-]{4,20}$")


def customer_search_arms(term: str) -> list[Q]:
    """Exact search by e-mail, phone, member number or name (kanji or kana), through indexed columns only:
    each candidate interpretation of the term as one equality on a blind index or on the member number or
    external id (none for an empty term).

    No `icontains`: the database answers from an index whatever the table size.

    Kept exception to "Django's defaults" (README, Architecture): the admin's own search cannot read
    encrypted columns, and `icontains` scans the table. What it costs to maintain: every searchable field
    needs its normaliser and its `*_bidx` column kept in step (Customer.refresh_blind_indexes, crm.crypto),
    a change of normalisation or of BLIND_INDEX_KEY means recomputing every row's indexes, and the
    indexes leak equality (only what must be searched is indexed).
    """
    term = unicodedata.normalize("NFKC", term).strip()
    if not term:
        return []
    arms = [Q(name_bidx=name_index(term)), Q(kana_bidx=name_index(term))]
    if "@" in term:
        arms.append(Q(email_bidx=email_index(term)))
    phone = phone_index(term)
    if phone:
        arms.append(Q(phone_bidx=phone))
    if _MEMBER_NO.match(term):
        arms += [Q(member_no=term), Q(external_id=term)]
    return arms


def customer_search_q(term: str) -> Q:
    """The exact search as one condition: its arms (customer_search_arms) ORed."""
    arms = customer_search_arms(term)
    if not arms:
        return Q(pk__in=[])
    q = arms[0]
    for arm in arms[1:]:
        q |= arm
    return q


# More matches than this is not an exact search any more (the most common full name of the demo data,
# Faker ja_JP, matches ~1,500 of a million): past it the matches stay a subquery.
SEARCH_IDS_CAP = 5_000


CustomersT = TypeVar("CustomersT", bound=QuerySet[Customer])


def customer_search_counted(qs: CustomersT, term: str) -> tuple[CustomersT, int | None]:
    """`qs` (already restricted, and filtered as the caller likes) narrowed to the customers matching `term`
    exactly, and how many they are (None past SEARCH_IDS_CAP).

    The matches are found first, through `qs` itself (the gate's rows and the caller's filters): one
    statement, a UNION of one lookup per interpretation of the term (customer_search_arms), each an
    index-only scan of its (blind index, team) INCLUDE (id) index (crm/0025): the user's teams are a condition
    inside the index, and no table page is read for the matches. Before: one OR, a BitmapOr that read every
    match's table page (1,500 random pages for a common name: 15 ms when they are not cached), and with the
    team filter the planner ANDed in a bitmap of the whole team (200,000 entries): 20-60 ms.
    The ids are then handed to the list's query as a literal array (`id = ANY(...)`), so the planner knows
    how few they are and walks them in the list's order; and since they are exactly the matches, their number
    is the list's count (crm.admin.changelist), so no count runs.
    """
    arms = customer_search_arms(term)
    if not arms:
        return qs.none(), 0
    scope = qs.order_by().values_list("pk", flat=True)
    lookups = [scope.filter(arm) for arm in arms]
    ids = list(lookups[0].union(*lookups[1:])[: SEARCH_IDS_CAP + 1])
    if not ids:
        return qs.none(), 0
    if len(ids) > SEARCH_IDS_CAP:
        matches = scope.filter(customer_search_q(term))
        sql, params = matches.query.sql_with_params()
        # Safe: Django's own compilation of an ORM query, every value a bound parameter; OFFSET 0 fences
        # the BitmapOr off from the list's ordering.
        return qs.filter(pk__in=RawSQL(f"{sql} OFFSET 0", params)), None  # noqa: S611
    column = f'"{Customer._meta.db_table}"."{Customer._meta.pk.column}"'
    return qs.filter(RawSQL(f"{column} = ANY(%s)", [ids], output_field=BooleanField())), len(ids)  # noqa: S611


def customer_search(qs: CustomersT, term: str) -> CustomersT:
    """`qs` (already restricted) narrowed to the customers matching `term` (customer_search_counted)."""
    return customer_search_counted(qs, term)[0]


def customer_list(*, user: User | AnonymousUser, search: str = "", action: str = "view") -> CustomerQuerySet:
    """Customers `user` may see, optionally narrowed by an exact search term."""
    qs = Customer.objects.restrict(user, action)
    return customer_search(qs, search) if search.strip() else qs


CUSTOMER_REF_FIELDS = ("id", "team_id", "status", "external_id")


def customer_ref(
    *, user: User | AnonymousUser, team_id: int, external_id: str, action: str = "change"
) -> Customer | None:
    """The customer of team `team_id` with this external id if `user` may `action` it: ids, team and status
    only (nothing decrypted, the other fields deferred), for linking a record to it.

    External ids are unique per team (an API client names its own team's customers), so another team's use
    of the same id is neither found nor told apart from "no such customer". The integration API runs this on
    every write: the statement is the gate's own queryset, compiled by Django, on the (external id, team)
    unique index.
    """
    query = customer_ref_query(user=user, team_id=team_id, external_id=external_id, action=action)
    if query is None:
        return None
    row = rawsql.fetch_one(*query)
    return customer_ref_load(row) if row else None


def customer_ref_queryset(
    *, user: User | AnonymousUser, team_id: int, external_id: str, action: str = "change"
) -> QuerySet[Any]:
    """customer_ref as a queryset: the gate's own `Customer.objects.restrict(user, action)`, narrowed."""
    return (
        Customer.objects.restrict(user, action)
        .filter(team_id=team_id, external_id=external_id)
        .order_by()
        .values_list(*CUSTOMER_REF_FIELDS)
    )


# Stand-ins for the per-call values while customer_ref's statement is compiled once per shape: negative ids
# no row has (within a 32-bit integer: Django compiles an out-of-range id to "no rows") and a string no
# external id can be (PostgreSQL text refuses NUL).
_STAND_IN_USER, _STAND_IN_TEAM, _STAND_IN_EXTERNAL_ID = -2_147_480_001, -2_147_480_002, "\x00external-id"
# (action, ALL | TEAMS) → (statement, parameters with stand-ins), per process.
_ref_statements: dict[tuple[str, str], tuple[str, tuple[Any, ...]]] = {}


def customer_ref_query(
    *, user: User | AnonymousUser, team_id: int, external_id: str, action: str = "change"
) -> tuple[str, list[object]] | None:
    """customer_ref's statement and parameters (None when `user` may `action` no customer at all), for a
    caller that asks it together with another lookup in one round trip (consent.selectors).

    The statement is customer_ref_queryset (the gate's own queryset) compiled by Django with its parameters
    bound, never a copy of the rule: the permission subquery over guardian's tables is part of it, so the rule
    runs inside the one statement. Compiling it cost several milliseconds of CPU per API call, so it is
    compiled once per shape of the user's scope (every team, or a subquery of their teams) for a stand-in
    of the user, and each call puts its own user id, team id and external id in place of the stand-ins
    (tests/crm/test_permissions.py compares the result with a fresh compilation for each role).
    """
    kind = scope_kind(user, action)
    if kind is None:
        return None
    if hasattr(user, REMEMBERED_TEAM_IDS):  # literal team ids: a statement of its own
        return _compiled(
            customer_ref_queryset(user=user, team_id=team_id, external_id=external_id, action=action)
        )
    key = (action, kind)
    if key not in _ref_statements:
        stand_in = copy.copy(user)  # the same permissions (loaded above by scope_kind), another id
        stand_in.pk = _STAND_IN_USER
        compiled = _compiled(
            customer_ref_queryset(
                user=stand_in, team_id=_STAND_IN_TEAM, external_id=_STAND_IN_EXTERNAL_ID, action=action
            )
        )
        if compiled is None:
            return None
        if kind == TEAMS and _STAND_IN_USER not in compiled[1]:
            # The rule changed shape without the user id in it: never reuse a statement that is not per user.
            return _compiled(
                customer_ref_queryset(user=user, team_id=team_id, external_id=external_id, action=action)
            )
        _ref_statements[key] = (compiled[0], tuple(compiled[1]))
    sql, template = _ref_statements[key]
    values = {_STAND_IN_USER: user.pk, _STAND_IN_TEAM: team_id}
    params = [
        external_id if p == _STAND_IN_EXTERNAL_ID else values[p] if type(p) is int and p in values else p
        for p in template
    ]
    return sql, params


def _compiled(qs: QuerySet[Any]) -> tuple[str, list[object]] | None:
    try:
        sql, params = qs.query.sql_with_params()
    except EmptyResultSet:  # no customer at all (qs.none(), or no team): nothing to ask the database
        return None
    return sql, list(params)


def customer_ref_load(row: Sequence[Any]) -> Customer:
    """The Customer (CUSTOMER_REF_FIELDS only) of a row that starts with customer_ref's columns."""
    return Customer.from_db("default", list(CUSTOMER_REF_FIELDS), list(row[: len(CUSTOMER_REF_FIELDS)]))


def customer_get(*, user: User | AnonymousUser, pk: int, action: str = "view") -> Customer:
    """One customer if `user` may `action` it; Customer.DoesNotExist otherwise (no existence leak)."""
    return Customer.objects.restrict(user, action).get(pk=pk)


def viewable_team_choices(user: User | AnonymousUser) -> list[tuple[int, str]]:
    """(id, name) of the teams whose customers `user` may view, by team code: the admin's team filter.

    The same scope as restrict(user, "view") (crm.permissions.teams_open_to), as one query on the team table.
    """
    teams = teams_open_to(user, "view").order_by("code")
    return [(int(pk), name) for pk, name in teams.values_list("id", "name")]
