"""The field classification registry: every field of every model that can hold personal data, once.

Masking in lists, audit redaction, (later) the disclosure package, anonymisation and the data dictionary all
read this registry. A model field that is neither classified nor declared not-personal fails a test
(tests/crm/test_classification.py), so a new field cannot slip through unclassified.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from django.db import models
from django.utils.translation import gettext_lazy as _


class DataClass(models.TextChoices):
    DIRECT = "direct", _("直接識別子（個人情報）")
    QUASI = "quasi", _("準識別子")
    ATTRIBUTE = "attribute", _("属性・行動データ")
    SPECIAL_CARE = "special_care", _("要配慮個人情報（法第2条第3項）")
    ANONYMISED = "anonymised", _("匿名化・集計値")
    DERIVED = "derived", _("鍵付きハッシュ（検索用ブラインドインデックス）")
    NOT_PERSONAL = "not_personal", _("個人データではない")


# Classes whose values never appear in clear in lists (without permission) or in the audit log.
PERSONAL_CLASSES = frozenset({DataClass.DIRECT, DataClass.QUASI, DataClass.ATTRIBUTE, DataClass.SPECIAL_CARE})


@dataclass(frozen=True)
class FieldSpec:
    """How one field is treated: its class, the purposes it serves and the retention category."""

    data_class: DataClass
    purposes: tuple[str, ...] = ()
    retention: str = ""
    mask: str = "full"  # name of a masker in MASKERS
    description: str = ""

    @property
    def personal(self) -> bool:
        return self.data_class in PERSONAL_CLASSES


@dataclass
class Registry:
    """model label ("crm.Customer") → field name → FieldSpec."""

    models: dict[str, dict[str, FieldSpec]] = field(default_factory=dict)

    def declare(self, label: str, **fields: FieldSpec) -> None:
        self.models.setdefault(label, {}).update(fields)

    def spec(self, label: str, name: str) -> FieldSpec | None:
        return self.models.get(label, {}).get(name)

    def fields_of(self, label: str, *classes: DataClass) -> list[str]:
        return [n for n, s in self.models.get(label, {}).items() if not classes or s.data_class in classes]

    def personal_fields(self, label: str) -> list[str]:
        return [n for n, s in self.models.get(label, {}).items() if s.personal]


REGISTRY = Registry()


def not_personal(description: str = "") -> FieldSpec:
    return FieldSpec(DataClass.NOT_PERSONAL, description=description)


# --- masking ---------------------------------------------------------------------------------------

REDACTED = "[redacted]"


def mask_email(value: str) -> str:
    local, _sep, domain = value.partition("@")
    return f"{local[:2]}***@{domain}" if domain else "***"


def mask_phone(value: str) -> str:
    """'+819012345678' → '090-****-5678' (national format, middle hidden)."""
    try:
        national = phonenumbers.format_number(
            phonenumbers.parse(value, "JP"), phonenumbers.PhoneNumberFormat.NATIONAL
        )
    except phonenumbers.NumberParseException:
        national = value
    digits_seen = 0
    out = []
    total = sum(c.isdigit() for c in national)
    for c in national:
        if c.isdigit():
            digits_seen += 1
            keep = digits_seen <= 3 or digits_seen > total - 4
            out.append(c if keep else "*")
        else:
            out.append(c)
    return "".join(out)


def mask_name(value: str) -> str:
    """'山田 太郎' → '山* 太*': the first character of each part."""
    return " ".join(part[:1] + "*" * max(len(part) - 1, 1) for part in value.split()) or "*"


def mask_postal(value: str) -> str:
    return value[:1] + "**-****" if value else ""


def mask_full(value: Any) -> str:
    return "****" if value not in (None, "") else ""


def mask_date(value: Any) -> str:
    return f"{value.year // 10 * 10}年代" if isinstance(value, dt.date) else "****"


MASKERS: dict[str, Callable[[Any], str]] = {
    "email": mask_email,
    "phone": mask_phone,
    "name": mask_name,
    "postal": mask_postal,
    "date": mask_date,
    "full": mask_full,
}


def mask_value(label: str, name: str, value: Any) -> Any:
    """The value as a person without the 'view personal data' permission sees it."""
    spec = REGISTRY.spec(label, name)
    if spec is None or not spec.personal or value in (None, ""):
        return value
    return MASKERS[spec.mask](value)


def audit_mask(value: Any) -> str:
    """AUDITLOG_MASK_CALLABLE: a personal value never reaches the audit log, not even in part."""
    return REDACTED


def audit_masked_fields(label: str) -> list[str]:
    return REGISTRY.personal_fields(label)


def audit_excluded_fields(label: str) -> list[str]:
    # Blind indexes are keyed hashes of personal values: no value in an audit trail.
    return REGISTRY.fields_of(label, DataClass.DERIVED)
