"""The field classification registry: every field of every model that can hold personal data, once.

Masking in lists, audit redaction, (later) the disclosure package, anonymisation and the data dictionary all
read this registry. A model field that is neither classified nor declared not-personal fails a test
(tests/crm/test_classification.py), so a new field cannot slip through unclassified.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import phonenumbers
from django.db import models
from django.utils.translation import gettext
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
class Generalisation:
    """What a field leaves behind when anonymisation or pseudonymisation clears it: the value of the
    generaliser `by` (a name in crm.retention.rules.GENERALISERS) written into the field `into` of the same
    row, e.g. birth date → age band, address → prefecture. `into` must be a field those actions keep."""

    into: str
    by: str


@dataclass(frozen=True)
class FieldSpec:
    """How one field is treated: its class, the purposes it serves and the retention category.

    `free_text`: free-form content (a memo, a JSON document) that can name the person whatever the form asks:
    anonymisation empties it, and so does unlinking a row from an erased customer, even when its class alone
    (a structured attribute) would keep it. `generalise`: the trace the field leaves when it is cleared.
    """

    data_class: DataClass
    purposes: tuple[str, ...] = ()
    retention: str = ""
    mask: str = "full"  # name of a masker in MASKERS
    description: str = ""
    _: KW_ONLY
    free_text: bool = False
    generalise: Generalisation | None = None

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


def declare_object_permissions(*labels: str) -> None:
    """Classify django-guardian's direct object-permission tables (a user's or a group's permission on one
    row): they name staff and a permission, never a customer."""
    for label in labels:
        REGISTRY.declare(
            label,
            id=not_personal(),
            permission=not_personal(),
            content_object=not_personal(),
            user=not_personal("従業者"),
            group=not_personal(),
        )


# --- masking ---------------------------------------------------------------------------------------

REDACTED = "[redacted]"
# A tuple, not `str | dict | …`: that union would be built anew on every call (~3 ms per list page).
_CONTAINERS = (str, dict, list, tuple)


def _empty(value: Any) -> bool:
    """No value to hide: shown as it is (blank), so a list does not suggest data that is not there."""
    return value is None or (isinstance(value, _CONTAINERS) and not value)


def mask_email(value: str) -> str:
    """'taro.yamada@example.com' → 'ta***@example.com'; short local parts show less (never all of it)."""
    local, _sep, domain = value.strip().rpartition("@")
    if not local or not domain:
        return "***"
    keep = 2 if len(local) >= 4 else 1 if len(local) >= 2 else 0
    return f"{local[:keep]}***@{domain}"


def _e164(value: str) -> phonenumbers.PhoneNumber | None:
    """The number of a stored E.164 value ('+819012345678', what Customer.normalise() writes) without
    phonenumbers.parse(), whose general parser is half the cost of a masked list page; None for anything
    else (the caller then parses). Country calling codes are prefix-free, so the first known one is it."""
    if not (value.startswith("+") and value[1:].isascii() and value[1:].isdigit()):
        return None
    digits = value[1:]
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            national = digits[size:]
            if not national or national.startswith("0"):
                return None  # a leading zero (Italy) is phonenumbers.parse()'s to handle
            return phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    return None


def mask_phone(value: str) -> str:
    """'+819012345678' → '090-****-5678' (national format for Japan, E.164 otherwise: format_phone's).

    At most the first three and last four digits show, and only when at least ten digits remain hidden
    behind them; a short number shows no more than a third of its digits.
    """
    if (
        len(value) == 13
        and value.startswith(("+8170", "+8180", "+8190"))
        and not value.startswith("+81800")  # 0800: free dial, written 0800-XXX-XXX
        and value[3:].isdigit()
    ):
        # A Japanese mobile number (070/080/090 + 8 digits), the most common stored value: the national
        # format phonenumbers writes for it is 0X0-XXXX-XXXX (a test checks samples of every prefix).
        return f"0{value[3:5]}-****-{value[9:]}"
    return _mask_formatted_phone(value)


def _phone_format(number: phonenumbers.PhoneNumber) -> str:
    """The one way a number is written, in clear and masked: national for Japan, E.164 for abroad."""
    fmt = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if number.country_code == 81
        else phonenumbers.PhoneNumberFormat.E164
    )
    return phonenumbers.format_number(number, fmt)


def format_phone(value: str) -> str:
    """A stored phone number as people read it, as mask_phone writes it before masking: '+819012345678' →
    '090-1234-5678', '+442079460958' stays E.164; a value that is no number is returned unchanged."""
    if len(value) == 13 and value.startswith(("+8170", "+8180", "+8190")) and not value.startswith("+81800"):
        if value[3:].isdigit():  # the common Japanese mobile number, written without parsing (as mask_phone)
            return f"0{value[3:5]}-{value[5:9]}-{value[9:]}"
    try:
        return _phone_format(_e164(value) or phonenumbers.parse(value, "JP"))
    except phonenumbers.NumberParseException:
        return value


def _mask_formatted_phone(value: str) -> str:
    """mask_phone through phonenumbers' own formatting (every number the shortcut above does not take)."""
    try:
        shown = _phone_format(_e164(value) or phonenumbers.parse(value, "JP"))
    except phonenumbers.NumberParseException:
        return mask_full(value)  # not a phone number: nothing of it is known to be safe to show
    total = sum(c.isdigit() for c in shown)
    head, tail = (3, 4) if total >= 10 else (0, total // 3)
    digits_seen = 0
    out = []
    for c in shown:
        if c.isdigit():
            digits_seen += 1
            out.append(c if digits_seen <= head or digits_seen > total - tail else "*")
        else:
            out.append(c)
    return "".join(out)


def mask_name(value: str) -> str:
    """'山田 太郎' → '山* 太*': the first character of each part, then one '*' whatever the length."""
    return " ".join(part[:1] + "*" for part in value.split()) or "*"


def mask_postal(value: str) -> str:
    return value[:1] + "**-****" if value else ""


def mask_full(value: Any) -> str:
    return "" if _empty(value) else "****"


def mask_date(value: Any) -> str:
    """A date as its decade ('1980年代' / '1980s' in the English UI)."""
    if not isinstance(value, dt.date):
        return "****"
    return gettext("%(decade)d年代") % {"decade": value.year // 10 * 10}


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
    if spec is None or not spec.personal or _empty(value):
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
