"""Hot-path reads as one constant SQL statement: model instances without compiling a query on every call.

Building a QuerySet's SQL (filters, joins, select_related, ordering) cost about a millisecond of CPU per
query, more than PostgreSQL took to answer it; the integration API ran three of them per write. The few
lookups on that path write their statement once (from the models' own metadata, so a renamed column cannot
drift) and turn the row back into instances here, through each field's own database converters (decrypting
fields, JSON), exactly as the ORM would.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import connections
from django.db.models import Model

M = TypeVar("M", bound=Model)


@functools.cache
def columns(model: type[Model], alias: str) -> str:
    """The select list of every concrete column of `model`, qualified by `alias`, in field order."""
    return ", ".join(f'{alias}."{f.column}"' for f in model._meta.concrete_fields)


def width(model: type[Model]) -> int:
    return len(model._meta.concrete_fields)


def load(model: type[M], row: Sequence[Any], start: int = 0, using: str = "default") -> M:
    """The instance of `model` whose columns (as `columns()` lists them) begin at `row[start]`."""
    connection = connections[using]
    fields = model._meta.concrete_fields
    values = list(row[start : start + len(fields)])
    for i, field in enumerate(fields):
        for convert in field.get_db_converters(connection):
            values[i] = convert(values[i], field, connection)
    return model.from_db(using, [f.attname for f in fields], values)


def fetch_one(sql: str, params: Any, using: str = "default") -> Sequence[Any] | None:
    with connections[using].cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()
