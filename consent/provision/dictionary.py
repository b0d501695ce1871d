"""The data dictionary (every classified field: class, purposes, retention, who sees it in clear, encrypted,
searchable) and the record of processing (GDPR Art. 30), generated from the classification registry, the
models, the purposes register, the recipients and the retention policies: nothing here is typed twice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils.translation import gettext as _

from crm.classification import PERSONAL_CLASSES, REGISTRY, DataClass
from crm.fields import EncryptedCharField, EncryptedDateField, EncryptedTextField
from crm.permissions import ROLE_LABELS, ROLE_PERMISSIONS

ENCRYPTED_FIELDS = (EncryptedCharField, EncryptedDateField, EncryptedTextField)
# Blind indexes over more than the field of their own name (crm.models.Customer.normalise): full name, kana.
COMBINED_BLIND_INDEXES = {
    "name_bidx": ("family_name", "given_name"),
    "kana_bidx": ("family_name_kana", "given_name_kana"),
}
CLEAR_PERMISSION = "crm.view_customer_pii"


def crm_data_categories() -> list[str]:
    """The data classes this CRM holds: every class some registered field has (not 'not personal')."""
    held = {spec.data_class for fields in REGISTRY.models.values() for spec in fields.values()}
    return [c.value for c in DataClass if c in held and c != DataClass.NOT_PERSONAL]


def roles_seeing_clear() -> list[str]:
    """Roles whose permissions show personal values in clear (crm.view_customer_pii), by label."""
    return [str(ROLE_LABELS[r]) for r, perms in ROLE_PERMISSIONS.items() if CLEAR_PERMISSION in perms]


def _searchable(model: type[models.Model], name: str) -> bool:
    names = {f.name for f in model._meta.concrete_fields}
    if f"{name}_bidx" in names:
        return True
    if any(name in fields and index in names for index, fields in COMBINED_BLIND_INDEXES.items()):
        return True
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:  # a registry entry with no column (never for a classified model)
        return False
    if isinstance(field, ENCRYPTED_FIELDS):
        return False  # ciphertext: only a blind index finds it
    if (
        getattr(field, "db_index", False)
        or getattr(field, "unique", False)
        or getattr(field, "primary_key", False)
    ):
        return True
    if any(index.fields and index.fields[0].lstrip("-") == name for index in model._meta.indexes):
        return True
    # A unique constraint's index serves lookups by its leading column (member_no, unique per team).
    return any(
        isinstance(c, models.UniqueConstraint) and c.fields and c.fields[0] == name
        for c in model._meta.constraints
    )


@dataclass(frozen=True)
class DictionaryRow:
    model_label: str
    model_name: str
    field: str
    field_name: str
    data_class: str
    personal: bool
    purposes: str
    retention: str
    description: str
    clear_to: str
    encrypted: bool
    searchable: bool


def dictionary_rows(query: str = "") -> list[DictionaryRow]:
    """Every field of every model the registry declares, in registry order; `query` keeps rows whose model,
    field, label, class or description contains it (case-insensitive)."""
    clear_roles = "、".join([*roles_seeing_clear(), _("スーパーユーザー")])
    rows = []
    for label, fields in REGISTRY.models.items():
        try:
            model = apps.get_model(label)
        except LookupError:
            continue
        for name, spec in fields.items():
            try:
                field: Any = model._meta.get_field(name)
                verbose = str(getattr(field, "verbose_name", name))
            except FieldDoesNotExist:
                field, verbose = None, name
            personal = spec.data_class in PERSONAL_CLASSES
            row = DictionaryRow(
                model_label=label,
                model_name=str(model._meta.verbose_name),
                field=name,
                field_name=verbose,
                data_class=str(DataClass(spec.data_class).label),
                personal=personal,
                purposes=", ".join(spec.purposes),
                retention=spec.retention,
                description=spec.description,
                clear_to=clear_roles if personal else _("閲覧権限のある従業者"),
                encrypted=isinstance(field, ENCRYPTED_FIELDS),
                searchable=_searchable(model, name),
            )
            rows.append(row)
    if query:
        q = query.casefold()
        rows = [
            r
            for r in rows
            if any(
                q in str(v).casefold()
                for v in (r.model_label, r.model_name, r.field, r.field_name, r.data_class, r.description)
            )
        ]
    return rows


DICTIONARY_HEADER = (
    "model",
    "model_name",
    "field",
    "field_name",
    "class",
    "personal",
    "purposes",
    "retention",
    "description",
    "clear_to",
    "encrypted",
    "searchable",
)


def dictionary_csv_rows(rows: list[DictionaryRow]) -> list[list[str]]:
    return [
        [
            r.model_label,
            r.model_name,
            r.field,
            r.field_name,
            r.data_class,
            str(r.personal).lower(),
            r.purposes,
            r.retention,
            r.description,
            r.clear_to,
            str(r.encrypted).lower(),
            str(r.searchable).lower(),
        ]
        for r in rows
    ]
