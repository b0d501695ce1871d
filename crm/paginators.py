"""A changelist paginator that never counts a million rows.

Django's changelist runs COUNT(*) over the whole table on every page (ticket #8408): about 100 ms to
seconds at 1 M rows, on every click. Instead:

- unfiltered: the planner's row estimate for the table, `pg_class.reltuples` (kept fresh by autovacuum's
  ANALYZE; exact enough for a page count);
- filtered (team scope, status, search): the planner's estimate for the filtered query (EXPLAIN, nothing
  run) when it is at least TRUSTED_ESTIMATE rows: a staff member's team of 200,000 customers is not counted
  on every click. Below that, an exact count of at most CAP+1 rows, which is an index scan that stops early,
  run under `SET LOCAL statement_timeout` (settings.ADMIN_COUNT_TIMEOUT_MS) so that a filter without a
  usable index cannot hold the page; past the cap or the timeout, the estimate.
- An estimate can be wrong for correlated filters (a team whose customers all have one status). The
  changelist (crm.admin.changelist.IndexedSortChangeList) corrects it from the rows themselves when the
  first page is not full: then the count is exactly the rows shown.

The count is only used for "n 件" and the page links, where an estimate is honest enough; the rows on the
page are always exact. Estimates (never exact counts) are kept per process for
settings.ADMIN_ESTIMATE_CACHE_SECONDS (default 60): asking the planner costs about a millisecond of planning
on every click of a large list, for a figure that moves slowly. A count is not personal data.

Kept exception to "Django's defaults" (README, Architecture). Why: COUNT(*) over a million rows on every
click (Django ticket #8408). What it costs to maintain: it reads PostgreSQL's catalogue and EXPLAIN output
(PostgreSQL only), it overrides Paginator.count and the changelist's result count, so a Django upgrade that
changes how the changelist counts must be checked against tests/crm/test_search.py and test_customer_list.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.core.paginator import Paginator
from django.db import OperationalError, connections, transaction

if TYPE_CHECKING:
    from django.db.models import QuerySet

CAP = 1_000
TRUSTED_ESTIMATE = 10 * CAP
_ESTIMATES: dict[tuple[Any, ...], tuple[float, int]] = {}
_ESTIMATES_KEPT = 512


def _remembered(key: tuple[Any, ...], compute: Callable[[], int | None]) -> int | None:
    """An estimate from the per-process cache while fresh, else computed (and kept when not None)."""
    ttl = float(getattr(settings, "ADMIN_ESTIMATE_CACHE_SECONDS", 60))
    now = time.monotonic()
    hit = _ESTIMATES.get(key)
    if hit is not None and now - hit[0] < ttl:
        return hit[1]
    value = compute()
    if value is not None and ttl > 0:
        if len(_ESTIMATES) >= _ESTIMATES_KEPT:
            _ESTIMATES.clear()
        _ESTIMATES[key] = (now, value)
    return value


class EstimatedCountPaginator(Paginator):
    """Exact counts for small results, estimates for large ones (see module docstring).

    `count_first`: the result is known to be small (an exact search), so count (capped) before asking the
    planner, whose estimate would only be needed past the cap.
    """

    count_first = False

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        if not hasattr(qs, "query"):  # a plain list (never from the changelist, but Paginator allows it)
            return len(qs)
        qs = cast("QuerySet[Any]", qs)  # it has a query: a queryset
        if not qs.query.where and not qs.query.is_sliced:
            table = qs.model._meta.db_table
            estimate = _remembered((qs.db, table), lambda: table_estimate(qs.db, table))
            if estimate is not None and estimate > CAP:
                return estimate

        def planned() -> int:
            return _remembered(_query_key(qs), lambda: query_estimate(qs)) or 0

        estimate = None if self.count_first else planned()
        if estimate is not None and estimate >= TRUSTED_ESTIMATE:
            return estimate
        counted = capped_count(qs, CAP)
        if counted is not None and counted <= CAP:
            return counted
        # More than CAP rows, or the count timed out: the planner's estimate (never below what we saw).
        return max(planned() if estimate is None else estimate, counted or 0)


def _query_key(qs: Any) -> tuple[Any, ...]:
    try:
        sql, params = qs.order_by().query.sql_with_params()
    except EmptyResultSet:
        return (qs.db, "empty")
    return (qs.db, sql, tuple(map(repr, params)))


def table_estimate(using: str, table: str) -> int | None:
    """pg_class.reltuples, or None when the table has never been analysed (reltuples = -1)."""
    with connections[using].cursor() as cur:
        cur.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cur.fetchone()
    return int(row[0]) if row and row[0] >= 0 else None


def capped_count(qs: Any, cap: int, timeout_ms: int | None = None) -> int | None:
    """min(count, cap+1) under the admin count timeout (or `timeout_ms`); None when the timeout struck."""
    timeout = timeout_ms or int(getattr(settings, "ADMIN_COUNT_TIMEOUT_MS", 150))
    try:
        with transaction.atomic(using=qs.db):
            with connections[qs.db].cursor() as cur:
                # SET LOCAL ends with the transaction, but not with a savepoint that is released: inside an
                # outer transaction (a test, an atomic caller) it would outlive the count. Put it back.
                cur.execute("SHOW statement_timeout")
                previous = cur.fetchone()[0]
                cur.execute("SELECT set_config('statement_timeout', %s, true)", [str(timeout)])
            count = qs.order_by()[: cap + 1].count()
            with connections[qs.db].cursor() as cur:
                cur.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
            return count
    except OperationalError:
        # QueryCanceled: the atomic block rolled back to its savepoint, the connection is usable.
        return None


def query_estimate(qs: Any) -> int:
    """The planner's row estimate for the (unordered) query: EXPLAIN, nothing executed."""
    try:
        sql, params = qs.order_by().query.sql_with_params()
    except EmptyResultSet:  # .none() or an empty IN list: nothing to ask the planner
        return 0
    with connections[qs.db].cursor() as cur:
        cur.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cur.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])
