"""The registry of what each app holds about a customer: the sections of the disclosure package.

A disclosure (開示, APPI Art. 33; access and portability, GDPR Arts. 15 and 20) must give the person every
personal datum the company holds about them. crm offers this registry and never imports the apps above it:
each app registers its sections in its AppConfig.ready() (crm in crm.disclosure.sections, consent and
incidents in theirs), exactly as they register erasure participants with crm.retention.participants.

A section is usually a `ModelSection`: the rows of one model about one customer, whose columns are read from
the classification registry (crm.classification) each time a package is built — every field declared
personal, decrypted by its field — plus the few non-personal columns named as `context` (ids, times, codes)
that make the rows readable. A personal field declared later in a registered model is in the next package
without any change here (tests/crm/test_disclosure.py checks every personal field of every model pointing to
a customer). Registering one more model is one line:

    disclosure_section_register(ModelSection("consent.provisions", _("第三者提供の記録"), "consent.X"))

A section that is not the rows of one model (a summary, the published purposes) implements `Section`.

Each section is read with one set-based query per customer, streamed (QuerySet.iterator), never row by row.
The rows are what the company holds, not what the handler may see: the package is built by a task acting
for the company under a request whose access is gated (consent.requests), so sections read without restrict().
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from django.apps import apps
from django.db import models
from django.db.models import Q
from django.utils.functional import Promise

from crm.classification import REGISTRY

JST = ZoneInfo("Asia/Tokyo")

# How a column's values are written in the readable page (the JSON and CSV keep the values themselves).
TEXT, DATETIME, DATE, BOOL, NUMBER, JSON = "text", "datetime", "date", "bool", "number", "json"


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of a section: `name` is its key in the JSON and its CSV header; `label` (lazy, Japanese
    msgid) its heading in the readable page; `choices` the labels of coded values."""

    name: str
    label: str | Promise
    kind: str = TEXT
    choices: tuple[tuple[Any, Any], ...] = ()
    personal: bool = False


@dataclasses.dataclass(frozen=True)
class SectionContext:
    """What a section is asked for: the customer (None: nobody matched), the requester's language and the
    instant the package describes."""

    customer_id: int | None
    language: str
    as_of: dt.datetime


class Section(Protocol):
    """One table of the package. `about_person`: its rows are data about the person (a package whose such
    sections are all empty says that no data is held); the published purposes are not."""

    @property
    def key(self) -> str: ...

    @property
    def title(self) -> str | Promise: ...

    @property
    def about_person(self) -> bool: ...

    def columns(self, ctx: SectionContext) -> list[Column]: ...

    def rows(self, ctx: SectionContext) -> Iterator[Sequence[Any]]:
        """The rows as value sequences in the order of columns(): one set-based query, streamed."""
        ...


def _kind(field: models.Field[Any, Any]) -> str:
    if isinstance(field, models.DateTimeField):
        return DATETIME
    if isinstance(field, models.DateField) or field.get_internal_type() == "DateField":
        return DATE
    if isinstance(field, models.BooleanField):
        return BOOL
    if isinstance(field, models.JSONField):
        return JSON
    if isinstance(field, models.IntegerField | models.DecimalField | models.FloatField | models.AutoField):
        return NUMBER
    return TEXT


def _date_kind(field: models.Field[Any, Any]) -> str:
    # Encrypted dates are text columns whose Python value is a date (crm.fields.EncryptedDateField).
    return DATE if type(field).__name__ == "EncryptedDateField" else _kind(field)


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """The rows of one model about a customer: the `context` columns (lookups such as "purpose__code" are
    allowed), then every field the classification registry declares personal, in the model's field order.

    `customer` is the path from the model to the customer's id ("customer", or "pk" for the customer itself);
    `where` narrows the rows further (e.g. only notices that were sent)."""

    key: str
    title: str | Promise
    model: str
    context: tuple[str, ...] = ("id",)
    customer: str = "customer"
    order_by: tuple[str, ...] = ("pk",)
    where: Q | None = None
    about_person: bool = True

    def model_class(self) -> type[models.Model]:
        return apps.get_model(self.model)

    def personal_fields(self) -> list[str]:
        """The model's fields the registry declares personal (read now: a field declared later is in)."""
        model = self.model_class()
        declared = set(REGISTRY.personal_fields(model._meta.label))
        return [f.name for f in model._meta.concrete_fields if f.name in declared]

    def _names(self) -> list[str]:
        personal = self.personal_fields()
        return [*[c for c in self.context if c not in personal], *personal]

    def _column(self, name: str, personal: bool) -> Column:
        model = self.model_class()
        parts = name.split("__")
        field = cast("models.Field[Any, Any]", model._meta.get_field(parts[0]))
        label = field.verbose_name
        for part in parts[1:]:
            related = cast("type[models.Model]", field.related_model)
            field = cast("models.Field[Any, Any]", related._meta.get_field(part))
        if field.is_relation and len(parts) == 1:
            kind = NUMBER  # the related row's id
        else:
            kind = _date_kind(field)
        choices = tuple(field.flatchoices) if field.choices else ()
        return Column(name=name, label=label, kind=kind, choices=choices, personal=personal)

    def columns(self, ctx: SectionContext) -> list[Column]:
        personal = set(self.personal_fields())
        return [self._column(n, n in personal) for n in self._names()]

    def rows(self, ctx: SectionContext) -> Iterator[Sequence[Any]]:
        if ctx.customer_id is None:
            return iter(())
        qs = self.model_class()._default_manager.filter(**{self.customer: ctx.customer_id})
        if self.where is not None:
            qs = qs.filter(self.where)
        # values_list decrypts through the fields' from_db_value, as a model instance would.
        return qs.order_by(*self.order_by).values_list(*self._names()).iterator(chunk_size=2000)


_sections: dict[str, Section] = {}


def disclosure_section_register(section: Section) -> None:
    """Register a section (called from an AppConfig.ready(); registering a key again replaces it)."""
    _sections[section.key] = section


def disclosure_sections() -> list[Section]:
    """The registered sections, in the order they were first registered (app order in INSTALLED_APPS)."""
    return list(_sections.values())


def json_value(value: Any) -> Any:
    """A value as the JSON and CSV files carry it: instants in ISO 8601 with their JST offset (dates are
    computed in Asia/Tokyo), exact amounts, JSON documents as they are."""
    if isinstance(value, dt.datetime):
        return value.astimezone(JST).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value
