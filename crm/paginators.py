"""A changelist paginator that never counts a million rows.

Django's changelist runs COUNT(*) over the whole table on every page (ticket #8408). Unfiltered, we read
the planner's estimate from pg_class.reltuples; filtered, we count at most CAP+1 rows (an index range scan
that stops early) and, past the cap, fall back to the planner's row estimate for the query.
"""

from __future__ import annotations

import json
from functools import cached_property

from django.core.paginator import Paginator
from django.db import connections

CAP = 10_000


class EstimatedCountPaginator(Paginator):
    """Exact counts for small results, estimates for large ones."""

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        db = connections[qs.db]
        if not qs.query.where:
            with db.cursor() as cur:
                cur.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [qs.model._meta.db_table],
                )
                row = cur.fetchone()
            if row and row[0] > CAP:
                return int(row[0])
        capped = qs.order_by()[: CAP + 1].count()
        if capped <= CAP:
            return capped
        sql, params = qs.order_by().query.sql_with_params()
        with db.cursor() as cur:
            cur.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            plan = cur.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        return max(int(plan[0]["Plan"]["Plan Rows"]), capped)
