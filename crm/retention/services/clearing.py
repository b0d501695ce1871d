"""What the classification registry tells the erasure engine to clear, keep and generalise, as columns.

Nothing here chooses by field type or by field name: a field is cleared for its declared class, its retention
category or its `free_text` flag, and leaves a trace for its declared `generalise` (crm.classification,
declarations in */field_classes.py). Tables and columns come from the models' metadata (`_meta`), so a
renamed table or column, or a newly declared field, needs no change here.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db import connection, models

from crm.classification import REGISTRY, DataClass
from crm.crypto import DecryptionError
from crm.retention import rules

if TYPE_CHECKING:
    import datetime as dt

# Classes whose values go whenever a row is anonymised or unlinked from an erased customer.
CLEARED_CLASSES = frozenset({DataClass.DIRECT, DataClass.QUASI, DataClass.SPECIAL_CARE, DataClass.DERIVED})
# Retention categories the law makes us keep even after erasure (法人税法, 会社法 432(2)): kept, unlinked.
STATUTORY_CATEGORIES = frozenset({"tax_records"})


def quote(name: str) -> str:
    return connection.ops.quote_name(name)


def concrete_field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    """Field `name` of `model`, which must be a column of its table (not a reverse relation)."""
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field) or not field.column:
        raise TypeError(f"{model._meta.label}.{name} is not a column")
    return field


def related_model(rel: models.ForeignObjectRel) -> type[models.Model]:
    """The model holding the foreign key of `rel` (a class once the app registry is ready, never 'self')."""
    model = rel.related_model
    if isinstance(model, str):
        raise TypeError(f"unresolved relation {rel}")
    return model


def column(model: type[models.Model], name: str) -> str:
    """The quoted column of field `name` of `model` (from its metadata, never written by hand)."""
    return quote(str(concrete_field(model, name).column))


def table(model: type[models.Model]) -> str:
    return quote(model._meta.db_table)


def pk(model: type[models.Model]) -> str:
    return quote(model._meta.pk.column)


def clear_sql(field: models.Field[Any, Any]) -> str:
    """SQL value that empties `field`: NULL where allowed, else the empty value of its column type."""
    if field.null:
        return "NULL"
    if field.get_internal_type() == "JSONField":
        return "'{}'::jsonb"
    return "''"


def fields_to_clear(
    label: str,
    classes: frozenset[str],
    *,
    keep_categories: frozenset[str] = frozenset(),
    free_text: bool = False,
) -> list[models.Field[Any, Any]]:
    """Fields of model `label` declared in one of `classes`, and with `free_text` the personal fields declared
    free text too; none of a retention category in `keep_categories`. Registry order, each field once."""
    model = apps.get_model(label)
    declared = REGISTRY.models.get(label, {})
    names = [n for n, s in declared.items() if s.data_class in classes and s.retention not in keep_categories]
    if free_text:
        names += [
            n
            for n, s in declared.items()
            if s.free_text and s.personal and s.retention not in keep_categories and n not in names
        ]
    return [model._meta.get_field(n) for n in names]


def anonymise_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    """Columns anonymisation empties: every identifier (direct, quasi, special-care, blind index) and what is
    declared free text, which can hold anything. Other attributes (prefecture, gender) stay for analytics;
    a declared generalisation leaves its trace (birth date → age band, address → prefecture)."""
    return fields_to_clear(model._meta.label, CLEARED_CLASSES, free_text=True)


def pseudonymise_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    """仮名加工情報 (APPI Art. 41; 規則31): identifying descriptions and their blind indexes go; the record
    stays linked to its purchases and events under its internal id."""
    return fields_to_clear(model._meta.label, frozenset({DataClass.DIRECT, DataClass.DERIVED}))


def unlink_fields(model: type[models.Model], *, free_text: bool) -> list[models.Field[Any, Any]]:
    """Columns a row unlinked from a customer loses: the identifiers it holds itself (e.g. an event's visitor
    id) and, with `free_text` (the customer is erased, not anonymised), what is declared free text (a legal
    hold's note); statutory records (tax_records) stay as they are."""
    return fields_to_clear(
        model._meta.label, CLEARED_CLASSES, keep_categories=STATUTORY_CATEGORIES, free_text=free_text
    )


def clear_sets(fields: list[models.Field[Any, Any]], *, skip: frozenset[str] = frozenset()) -> list[str]:
    """`column = <empty>` assignments for `fields`, except the columns in `skip`."""
    return [f"{quote(f.column)} = {clear_sql(f)}" for f in fields if f.column not in skip]


@dataclasses.dataclass(frozen=True)
class Generalised:
    """One declared generalisation of a cleared field: `source` leaves `by(value)` in `target`."""

    source: models.Field[Any, Any]
    target: models.Field[Any, Any]
    by: rules.Generaliser


def generalisations(model: type[models.Model], cleared: list[models.Field[Any, Any]]) -> list[Generalised]:
    """The generalisations the registry declares for the fields in `cleared` (one source per target)."""
    label = model._meta.label
    out: list[Generalised] = []
    for field in cleared:
        spec = REGISTRY.spec(label, field.name)
        if spec is None or spec.generalise is None:
            continue
        target = concrete_field(model, spec.generalise.into)
        if any(g.target.name == target.name for g in out):
            raise ValueError(f"{label}.{target.name} is declared the generalisation of two fields")
        out.append(Generalised(field, target, rules.GENERALISERS[spec.generalise.by]))
    return out


def _read(field: models.Field[Any, Any], raw: Any) -> Any:
    """The Python value of a column as stored (decrypted for an encrypted field); None when no key opens it
    (it is wiped anyway, and leaves no trace)."""
    convert = getattr(field, "from_db_value", None)
    if convert is None:
        return raw
    try:
        return convert(raw, None, connection)
    except DecryptionError:
        return None


def generalised_values(
    model: type[models.Model], ids: list[int], gens: list[Generalised], on: dt.date
) -> tuple[list[int], list[list[Any]]]:
    """(ids, one list of target values per generalisation) for the rows `ids` of `model`, computed in Python
    from the values about to be cleared (the only ones the action reads) and what the targets hold now."""
    cols = [pk(model)] + [quote(g.source.column) for g in gens] + [quote(g.target.column) for g in gens]
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(cols)} FROM {table(model)} WHERE {pk(model)} = ANY(%s)",  # noqa: S608
            [ids],
        )
        raw = cur.fetchall()
    n = len(gens)
    row_ids = [r[0] for r in raw]
    values: list[list[Any]] = [[] for _ in gens]
    for row in raw:
        for i, g in enumerate(gens):
            kept = _read(g.target, row[1 + n + i])
            values[i].append(
                g.target.get_db_prep_value(g.by(_read(g.source, row[1 + i]), kept, on), connection)
            )
    return row_ids, values
