"""Reads of the customer record. Everything here starts from `Customer.objects.restrict(user, action)`."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db.models import Q
from django.db.models.expressions import RawSQL

from crm import rawsql
from crm.crypto import email_index, name_index, phone_index
from crm.models import Customer, CustomerQuerySet
from crm.permissions import ALL, team_scope

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


def customer_search(qs: CustomerQuerySet, term: str) -> CustomerQuerySet:
    """`qs` (already restricted) narrowed to the customers matching `term` exactly.

    The matches are found first, in a subquery fenced with OFFSET 0 so PostgreSQL plans it on its own: a
    BitmapOr over the blind-index columns that yields a handful of ids. Without the fence, a staff user's
    literal `team_id IN (…)` from restrict() tempts the planner to AND in a bitmap of the whole team
    (hundreds of thousands of entries) before it looks at the search at all.

    The subquery carries `qs`'s own filters (the team scope, the admin's filters) as well: its row estimate
    is then the scope's share of the matches. Given all the matches of a common name (a few hundred, of
    every team), the planner expected the first page of a staff member's results early in an ordered scan
    of the team's index, and read the whole team (200,000 entries, ~20 ms) for a name with 42 of them.
    """
    matches = qs.order_by().filter(customer_search_q(term)).values("pk")
    sql, params = matches.query.sql_with_params()
    # Safe: the SQL is Django's own compilation of an ORM query, every value stays a bound parameter.
    return qs.filter(pk__in=RawSQL(f"{sql} OFFSET 0", params))  # noqa: S611


def customer_list(
    *, user: AbstractBaseUser | AnonymousUser, search: str = "", action: str = "view"
) -> CustomerQuerySet:
    """Customers `user` may see, optionally narrowed by an exact search term."""
    qs = Customer.objects.restrict(user, action)
    return customer_search(qs, search) if search.strip() else qs


CUSTOMER_REF_FIELDS = ("id", "team_id", "status", "external_id")


def customer_ref(
    *, user: AbstractBaseUser | AnonymousUser, external_id: str, action: str = "change"
) -> Customer | None:
    """The customer with this external id if `user` may `action` it: ids, team and status only (nothing
    decrypted, the other fields deferred), for linking a record to it.

    The same policy as restrict() (crm.permissions.team_scope) in one constant statement on the unique
    external-id index: the integration API runs this on every write.
    """
    query = customer_ref_query(user=user, external_id=external_id, action=action)
    if query is None:
        return None
    row = rawsql.fetch_one(*query)
    return customer_ref_load(row) if row else None


def customer_ref_query(
    *, user: AbstractBaseUser | AnonymousUser, external_id: str, action: str = "change"
) -> tuple[str, list[object]] | None:
    """customer_ref's statement and parameters (None when `user` may `action` no customer at all), for a
    caller that asks it together with another lookup in one round trip (consent.selectors)."""
    scope = team_scope(user, action)
    if not scope:
        return None
    cols = ", ".join(f'"{Customer._meta.get_field(n).column}"' for n in CUSTOMER_REF_FIELDS)
    sql = f'SELECT {cols} FROM "{Customer._meta.db_table}" WHERE "external_id" = %s'  # noqa: S608
    params: list[object] = [external_id]
    if scope != ALL:
        sql += ' AND "team_id" = ANY(%s)'
        params.append(list(scope))
    return sql, params


def customer_ref_load(row: Sequence[Any]) -> Customer:
    """The Customer (CUSTOMER_REF_FIELDS only) of a row that starts with customer_ref's columns."""
    return Customer.from_db("default", list(CUSTOMER_REF_FIELDS), list(row[: len(CUSTOMER_REF_FIELDS)]))


def customer_get(*, user: AbstractBaseUser | AnonymousUser, pk: int, action: str = "view") -> Customer:
    """One customer if `user` may `action` it; Customer.DoesNotExist otherwise (no existence leak)."""
    return Customer.objects.restrict(user, action).get(pk=pk)


def viewable_team_choices(user: AbstractBaseUser | AnonymousUser) -> list[tuple[int, str]]:
    """(id, name) of the teams whose customers `user` may view, by team code: the admin's team filter.

    The same scope as restrict(user, "view") (team_scope), read by one constant statement.
    """
    from crm.models import Team

    scope = team_scope(user, "view")
    if not scope:
        return []
    table = Team._meta.db_table
    with rawsql.prepared_cursor() as cur:
        if scope == ALL:
            cur.execute(f'SELECT id, name FROM "{table}" ORDER BY code')  # noqa: S608
        else:
            cur.execute(f'SELECT id, name FROM "{table}" WHERE id = ANY(%s) ORDER BY code', [list(scope)])  # noqa: S608
        return [(int(pk), name) for pk, name in cur.fetchall()]
