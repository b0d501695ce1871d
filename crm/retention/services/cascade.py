"""Following the foreign keys that point at an erased or anonymised row, set-based (no rows in Python).

The relations are the ones Django's own deletion collector sees (hidden ones, related_name="+", included);
what an unlinked row loses is read from the registry (clearing.unlink_fields); tables and columns come from
the models' metadata.
"""

from __future__ import annotations

from typing import cast

from django.db import connection, models
from django.db.models.deletion import get_candidate_relations_to_delete

from crm.retention.services.clearing import clear_sets, pk, quote, related_model, table, unlink_fields


def relations_to(model: type[models.Model]) -> list[models.ForeignObjectRel]:
    """Foreign keys pointing at `model` that a deletion must follow — hidden ones (related_name="+")
    included, exactly as Django's own deletion collector sees them."""
    # django-stubs types the candidates as fields; Django yields the reverse relations (ForeignObjectRel).
    candidates = cast(list[models.ForeignObjectRel], list(get_candidate_relations_to_delete(model._meta)))
    return [rel for rel in candidates if rel.field.concrete and rel.on_delete is not models.DO_NOTHING]


def delete_rows(model: type[models.Model], column: str, ids: list[int]) -> None:
    """Delete rows of `model` whose `column` is in `ids`, following CASCADE set-based (no rows in Python)."""
    deps = relations_to(model)
    with connection.cursor() as cur:
        if not deps:
            cur.execute(f"DELETE FROM {table(model)} WHERE {quote(column)} = ANY(%s)", [ids])  # noqa: S608
            return
        cur.execute(
            f"DELETE FROM {table(model)} WHERE {quote(column)} = ANY(%s) RETURNING {pk(model)}",  # noqa: S608
            [ids],
        )
        child_ids = [row[0] for row in cur.fetchall()]
    for rel in deps:
        follow(rel, child_ids, unlink=False)


def unlink_sets(model: type[models.Model], column: str, *, free_text: bool) -> list[str]:
    """SET assignments unlinking a row of `model` through `column`: the link to NULL and the registry's
    unlink fields (clearing.unlink_fields) emptied."""
    return [
        f"{quote(column)} = NULL",
        *clear_sets(unlink_fields(model, free_text=free_text), skip=frozenset({column})),
    ]


def unlink_rows(model: type[models.Model], column: str, ids: list[int], *, free_text: bool = False) -> None:
    """Set the link to NULL and empty what the registry says an unlinked row loses (clearing.unlink_fields);
    `free_text`: the customer is erased, not anonymised, so declared free text goes too."""
    sets = unlink_sets(model, column, free_text=free_text)
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {table(model)} SET {', '.join(sets)} WHERE {quote(column)} = ANY(%s)",  # noqa: S608
            [ids],
        )


def follow(rel: models.ForeignObjectRel, ids: list[int], *, unlink: bool) -> None:
    """Apply the relation's on_delete to the rows pointing at `ids`: SET_NULL (or `unlink` on a nullable
    link) unlinks them, CASCADE deletes them."""
    if not ids:
        return
    model, column = related_model(rel), rel.field.column
    if rel.on_delete is models.SET_NULL or (unlink and rel.field.null):
        unlink_rows(model, column, ids, free_text=not unlink)
    elif rel.on_delete is models.CASCADE:
        delete_rows(model, column, ids)


def protected_sql(model: type[models.Model], alias: str) -> tuple[str, list[str]]:
    """NOT EXISTS clauses (on rows of `model` aliased `alias`) for relations that forbid deleting it
    (PROTECT/RESTRICT/SET_DEFAULT …), and the labels of the models behind them."""
    clauses, names = [], []
    for rel in relations_to(model):
        if rel.on_delete in (models.CASCADE, models.SET_NULL):
            continue
        clauses.append(
            f"NOT EXISTS (SELECT 1 FROM {table(related_model(rel))} p "  # noqa: S608
            f"WHERE p.{quote(rel.field.column)} = {alias}.{pk(model)})"
        )
        names.append(related_model(rel)._meta.label)
    return " AND ".join(clauses), names
