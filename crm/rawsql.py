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
from django.db.models.expressions import DatabaseDefault

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
        for convert in field.get_db_converters(connection):  # type: ignore[attr-defined]  # stub gap: Django 5.2 Field has it
            values[i] = convert(values[i], field, connection)
    return model.from_db(using, [f.attname for f in fields], values)


def prepared_cursor(using: str = "default") -> Any:
    """Django's own cursor on the request's connection (client-side binding, like every Django query).

    The name is historical: these statements were bound and prepared on the server through a private method
    of Django (DatabaseWrapper's `_prepare_cursor`) until bench/cursor_bench.py found no difference in time
    for the API's statements (bench/README.md, 2026-12-06).
    """
    return connections[using].cursor()


def fetch_one(sql: str, params: Any, using: str = "default") -> Sequence[Any] | None:
    with prepared_cursor(using) as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def _quoted(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{name}"' for name in names)


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...], defaults: tuple[bool, ...]) -> str:
    values = ", ".join("DEFAULT" if default else "%s" for default in defaults)
    return f'INSERT INTO "{table}" ({_quoted(columns)}) VALUES ({values})'  # noqa: S608


class ConstantInsert(Model):
    """Model mixin: the INSERT of an unsaved instance as one statement, to run with others (insert_together).

    For the rows a consent write stores in one statement (ledger event, audit entry, stored answer). Values go
    through the same steps as in Django's insert compiler (each field's pre_save and get_db_prep_save, so
    auto_now and encryption apply; a db_default left unset is DEFAULT); a value only Django's compiler can
    write (an expression, a field with its own placeholder) is refused. save() is Django's own: an earlier
    override of Model's `_do_insert` that reused these statements for save() was dropped (a private name of
    Django, for no difference the API bench could see: bench/README.md).
    """

    class Meta:
        abstract = True

    def insert_values(
        self, fields: Any, *, using: str = "default"
    ) -> tuple[tuple[str, ...], tuple[bool, ...], list[Any]] | None:
        """(columns, which of them are DEFAULT, parameters) of this row's INSERT, or None when a value needs
        Django's own insert (an expression, a field with its own placeholder)."""
        connection = connections[using]
        columns, defaults, params = [], [], []
        for field in fields:
            value = field.pre_save(self, add=True)
            default = isinstance(value, DatabaseDefault)
            if (hasattr(value, "resolve_expression") and not default) or hasattr(field, "get_placeholder"):
                return None
            columns.append(field.column)
            defaults.append(default)
            if not default:
                params.append(field.get_db_prep_save(value, connection))
        return tuple(columns), tuple(defaults), params

    def insert_statement(self, using: str = "default") -> tuple[str, list[Any]]:
        """The INSERT of this unsaved instance, primary key included (to run with others: insert_together)."""
        fields = [f for f in self._meta.local_concrete_fields if not f.generated]
        if self.pk is None:
            fields = [f for f in fields if f is not self._meta.auto_field]
        parts = self.insert_values(fields, using=using)
        if parts is None:
            raise ValueError(f"{type(self).__name__}: a value needs Django's own insert")
        columns, defaults, params = parts
        return _insert_sql(self._meta.db_table, columns, defaults), params


def insert_together(statements: Sequence[tuple[str, Sequence[Any]]], using: str = "default") -> None:
    """Run several INSERTs (or upserts) as one statement: all but the last as data-modifying WITH clauses.

    One round trip, and atomic without a transaction of its own: PostgreSQL runs a statement whole or not
    at all, so in autocommit there is no BEGIN/COMMIT either. Foreign keys between the rows hold (they are
    checked at the end of the statement). Each statement must be a plain INSERT without RETURNING.
    """
    *first, last = statements
    sql = "".join(f"{'WITH' if i == 0 else ','} w{i} AS ({s}) " for i, (s, _p) in enumerate(first)) + last[0]
    params = [p for _s, ps in statements for p in ps]
    with prepared_cursor(using) as cur:
        cur.execute(sql, params)
