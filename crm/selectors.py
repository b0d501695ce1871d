"""Reads of the customer record. Everything here starts from `Customer.objects.restrict(user, action)`."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db.models import Q

from crm.crypto import email_index, name_index, phone_index
from crm.models import Customer, CustomerQuerySet

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

_MEMBER_NO = re.compile(r"^[A-Za-z0-9\-]{4,20}$")


def customer_search_q(term: str) -> Q:
    """Exact search by e-mail, phone, member number or name (kanji or kana), through indexed columns only.

    No `icontains`: each candidate interpretation of the term becomes an equality on a blind index or on
    the member number, so the database answers from an index whatever the table size.
    """
    term = unicodedata.normalize("NFKC", term).strip()
    if not term:
        return Q(pk__in=[])
    q = Q(name_bidx=name_index(term)) | Q(kana_bidx=name_index(term))
    if "@" in term:
        q |= Q(email_bidx=email_index(term))
    phone = phone_index(term)
    if phone:
        q |= Q(phone_bidx=phone)
    if _MEMBER_NO.match(term):
        q |= Q(member_no=term) | Q(external_id=term)
    return q


def customer_scope_for_planner(
    qs: CustomerQuerySet,
    user: AbstractBaseUser | AnonymousUser,
    action: str = "view",
    *,
    team_ids: Sequence[int] | None = None,
) -> CustomerQuerySet:
    """The same rows as `qs` (already restricted), with the user's team ids spelled out for the planner.

    restrict() scopes a team member through a subquery over guardian's tables. PostgreSQL cannot see
    through it which teams (or how many rows) it selects, so at a million rows it guesses "most of the
    table" and counts or sorts by scanning the heap. Adding `team_id IN (1, 3)` — computed by the same
    teams_for() — lets it use the (team, id) index and its statistics. It only ever narrows the result:
    the restrict() condition stays in the query. Users who see every team (no condition) are left alone.

    Not for exact searches: there the blind indexes select a handful of rows, and a team-id condition
    would tempt the planner to AND in a bitmap of the whole team (hundreds of thousands of entries).
    `team_ids` lets a caller that already holds `teams_for(user, action)` (the admin, per request) pass
    them in instead of asking guardian again.
    """
    from crm.permissions import teams_for

    scope = Customer.objects.restrict(user, action).query  # built, not run: did restrict() add a condition?
    if not scope.where or scope.is_empty():
        return qs
    if team_ids is None:
        team_ids = list(teams_for(user, action).values_list("pk", flat=True))
    return qs.filter(team_id__in=list(team_ids))


def customer_list(
    *, user: AbstractBaseUser | AnonymousUser, search: str = "", action: str = "view"
) -> CustomerQuerySet:
    """Customers `user` may see, optionally narrowed by an exact search term."""
    qs = Customer.objects.restrict(user, action)
    if search.strip():
        return qs.filter(customer_search_q(search))
    return customer_scope_for_planner(qs, user, action)


def customer_get(*, user: AbstractBaseUser | AnonymousUser, pk: int, action: str = "view") -> Customer:
    """One customer if `user` may `action` it; Customer.DoesNotExist otherwise (no existence leak)."""
    return Customer.objects.restrict(user, action).get(pk=pk)
