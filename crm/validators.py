"""Validators for customer data, with messages in Japanese (the UI language) and English translations.

The My Number rule (番号法 9, 15, 19, 20; legal-rules.md §6) applies to every text a customer record holds,
free text included: an ordinary CRM may not store a 個人番号 even with consent.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.utils.translation import gettext_lazy as _

from crm.crypto import normalise_phone

if TYPE_CHECKING:
    from django.db.models import Model

# Dashes people (and IMEs) put between digit groups, after NFKC: hyphen-minus, the Unicode hyphens and
# dashes, the minus sign and the katakana prolonged sound mark (ー, often typed for a hyphen).
_DASHES = "\\-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc"
# Twelve digits, optionally grouped 4-4-4 by a space, a dash or a dot; not part of a longer number and not
# an E.164 phone number (which a '+' introduces). Full-width digits and separators become ASCII by NFKC.
_TWELVE_DIGITS = re.compile(rf"(?<![\d+])(\d{{4}})[ .{_DASHES}]?(\d{{4}})[ .{_DASHES}]?(\d{{4}})(?!\d)")


def is_my_number(digits: str) -> bool:
    """True when 12 digits pass the 個人番号 check digit (番号法施行令第8条; the formula is in 総務省令第85号
    （平成26年）第5条): Pn are the first 11 digits read from the right, Qn = n+1 (n ≤ 6) or n−5 (n ≥ 7);
    check = 0 when Σ Pn·Qn mod 11 ≤ 1, else 11 − remainder."""
    if len(digits) != 12 or not digits.isdecimal():
        return False
    body = digits[:11][::-1]
    total = sum(int(p) * (n + 1 if n <= 6 else n - 5) for n, p in enumerate(body, start=1))
    remainder = total % 11
    check = 0 if remainder <= 1 else 11 - remainder
    return check == int(digits[11])


def contains_my_number(text: str) -> bool:
    normalised = unicodedata.normalize("NFKC", text)
    return any(is_my_number("".join(m.groups())) for m in _TWELVE_DIGITS.finditer(normalised))


MY_NUMBER_MESSAGE = _("個人番号（マイナンバー）と思われる12桁の番号は登録できません（番号法第20条）。")


def validate_no_my_number(value: object) -> None:
    """Refuse a text (or a JSON value: every string and number inside it) holding a 個人番号."""
    if any(contains_my_number(text) for text in strings_in(value)):
        raise ValidationError(MY_NUMBER_MESSAGE, code="my_number")


def strings_in(value: object) -> Iterable[str]:
    """Every string inside a JSON-like value, for the My Number scan of structured fields.

    Numbers count as text: {"card": 123456789018} holds the same twelve digits as "123456789018".
    """
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        yield str(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from strings_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings_in(v)


def my_number_errors(instance: Model) -> dict[str, list[ValidationError]]:
    """The My Number rule over every editable text or JSON field of `instance` that does not already carry
    `validate_no_my_number` (those are checked by clean_fields), keyed by field name for the form.

    A generic scan, so that a field added later (or one whose own validator looks elsewhere, such as the
    phone number or the kana) cannot become the place where a 個人番号 is stored. Non-editable fields are
    left out: the blind indexes are hex digests, whose digit runs are not anybody's number.
    """
    errors: dict[str, list[ValidationError]] = {}
    for field in instance._meta.concrete_fields:
        if not field.editable or field.choices or validate_no_my_number in field.validators:
            continue
        value = getattr(instance, field.attname, None)
        if isinstance(value, str | dict | list) and any(contains_my_number(t) for t in strings_in(value)):
            errors[field.name] = [ValidationError(MY_NUMBER_MESSAGE, code="my_number")]
    return errors


validate_email = EmailValidator(message=_("メールアドレスの形式が正しくありません（例: taro@example.com）。"))


def validate_phone(value: str) -> None:
    if value and normalise_phone(value) is None:
        raise ValidationError(
            _("電話番号として正しくありません（例: 090-1234-5678、03-1234-5678、+44 20 7946 0958）。"),
            code="phone",
        )


# ASCII digits only (after NFKC): `\d` would also take Arabic-Indic or Devanagari digits.
_POSTAL = re.compile(rf"^〒?\s*([0-9]{{3}})[{_DASHES}]?([0-9]{{4}})$")


def normalise_postal_code(value: str) -> str | None:
    """'〒１００－０００５', '1000005', '100ー0005' → '100-0005'; None when it is not a postal code."""
    m = _POSTAL.match(unicodedata.normalize("NFKC", value).strip())
    return f"{m.group(1)}-{m.group(2)}" if m else None


def validate_postal_code(value: str) -> None:
    if value and normalise_postal_code(value) is None:
        raise ValidationError(
            _("郵便番号は 〒NNN-NNNN の形式で入力してください（例: 100-0005）。"), code="postal"
        )


# Hiragana, katakana (half-width becomes full-width by NFKC), ー, ・ (foreign names), the voicing marks and
# the iteration marks ゝゞヽヾ (いすゞ), and spaces between family and given name.
_KANA = re.compile(r"^[\u3041-\u3096\u309b-\u309e\u30a1-\u30fa\u30fb-\u30fe\s]+$")


def validate_kana(value: str) -> None:
    if value and not _KANA.match(unicodedata.normalize("NFKC", value)):
        raise ValidationError(_("フリガナはカタカナまたはひらがなで入力してください。"), code="kana")
