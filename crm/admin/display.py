"""How the customer admin shows values: clear values the way people read them, masked values for users
without 'view personal data' (crm.classification), and the phone input in national format."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AdminTextInputWidget
from django.utils.translation import gettext

from crm import field_classes as _field_classes  # noqa: F401  (fills REGISTRY, see PERSONAL)
from crm.classification import REGISTRY, format_phone, mask_value
from crm.crypto import normalise_phone
from crm.models import Customer
from crm.prefectures import prefecture_name

CUSTOMER = Customer._meta.label
# The admin is imported (autodiscover) before CrmConfig.ready() loads the classifications, so crm.admin
# imports crm.field_classes itself: without it this list came out empty and the change page showed and
# edited every personal field in clear for users without 'view personal data'.
PERSONAL = REGISTRY.personal_fields(CUSTOMER)
if not PERSONAL:
    raise RuntimeError("crm.Customer has no personal fields in the registry; refusing to show them unmasked.")


def age_band_label(value: str) -> str:
    """An anonymised age band as stored ('30代', '90歳以上', '10歳未満') in the current language."""
    for pattern, text in (
        (r"(\d+)代", gettext("%(age)d代")),
        (r"(\d+)歳以上", gettext("%(age)d歳以上")),
        (r"(\d+)歳未満", gettext("%(age)d歳未満")),
    ):
        match = re.fullmatch(pattern, value or "")
        if match:
            return text % {"age": int(match.group(1))}
    return value


# Clear values written the way people read them, the same in lists, on the page and masked (prefecture
# by name, not its JIS code; phone numbers national for Japan, E.164 abroad).
CLEAR_DISPLAY: dict[str, Callable[[Any], Any]] = {"prefecture": prefecture_name, "phone": format_phone}


def field_label(name: str) -> Any:
    """The verbose name of the customer's field `name` (a column, never a reverse relation)."""
    return next(f.verbose_name for f in Customer._meta.fields if f.name == name)


def fully_masked(name: str) -> bool:
    """Whether a user without 'view personal data' sees nothing of the customer's field `name` but its mask
    ('****', crm.classification's "full" masker): a list column of it would tell them nothing."""
    spec = REGISTRY.spec(CUSTOMER, name)
    return spec is not None and spec.personal and spec.mask == "full"


def column(slug: str, names: tuple[str, ...], label: Any, pii: bool) -> Callable[[Customer], Any]:
    """A list column of one field, or of several written as one (the name: 姓 名), clear or masked."""

    def value_of(obj: Customer, name: str) -> Any:
        value = getattr(obj, name)
        if not pii:
            return mask_value(CUSTOMER, name, value)
        shown = CLEAR_DISPLAY.get(name)
        return shown(value) if shown is not None and value else value

    def show(obj: Customer) -> Any:
        if len(names) == 1:
            return value_of(obj, names[0])
        return " ".join(str(v) for v in (value_of(obj, n) for n in names) if v) or None

    show.__name__ = f"col_{slug}"
    return admin.display(description=label)(show)


def masked_reader(name: str) -> Callable[[Any, Customer], Any]:
    def read(self: Any, obj: Customer) -> Any:
        shown = mask_value(CUSTOMER, name, getattr(obj, name)) if obj and obj.pk else None
        # The admin prints a callable's None as "None": an empty value is "-" as for a field.
        return "-" if shown is None or shown == "" or shown == {} else shown

    return admin.display(description=field_label(name))(read)


def clear_reader(name: str, shown: Callable[[Any], Any]) -> Callable[[Any, Customer], Any]:
    """A clear value, read-only and written as CLEAR_DISPLAY says (for users who see but do not change)."""

    def read(self: Any, obj: Customer) -> Any:
        value = getattr(obj, name) if obj and obj.pk else None
        return shown(value) if value else "-"

    return admin.display(description=field_label(name))(read)


class PhoneInput(AdminTextInputWidget):
    """The phone input shows the stored E.164 number as people write it; Customer.normalise() stores the
    E.164 form again on save."""

    def format_value(self, value: Any) -> Any:
        return format_phone(value) if value else super().format_value(value)


class PhoneFormField(forms.CharField):
    """Changed only when the number is: '090-1234-5678' posted back for a stored '+819012345678' is the
    same number (no "changed 電話番号" in the page's history for a form saved as it was shown)."""

    def has_changed(self, initial: Any, data: Any) -> bool:
        posted = (data or "").strip()
        return (normalise_phone(posted) or posted) != (initial or "") if posted else bool(initial)
