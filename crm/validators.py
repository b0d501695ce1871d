"""Validators for customer data, with messages in Japanese (the UI language) and English translations.

The My Number rule (番号法 9, 15, 19, 20; legal-rules.md §6) applies to every text a customer record holds,
free text included: an ordinary CRM may not store a 個人番号 even with consent.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.utils.translation import gettext_lazy as _

from crm.crypto import normalise_phone

# Twelve digits, optionally grouped 4-4-4 by a space or hyphen; not part of a longer number and not an
# E.164 phone number (which a '+' introduces).
_TWELVE_DIGITS = re.compile(r"(?<![\d+])(\d{4})[ \-‐－]?(\d{4})[ \-‐－]?(\d{4})(?!\d)")


def is_my_number(digits: str) -> bool:
    """True when 12 digits pass the 個人番号 check digit (行政手続における特定の個人を識別するための番号の
    利用等に関する法律施行令 第8条): Pn are the first 11 digits read from the right, Qn = n+1 (n ≤ 6) or n−5
    (n ≥ 7); check = 0 when Σ Pn·Qn mod 11 ≤ 1, else 11 − remainder."""
    if len(digits) != 12 or not digits.isdigit():
        return False
    body = digits[:11][::-1]
    total = sum(int(p) * (n + 1 if n <= 6 else n - 5) for n, p in enumerate(body, start=1))
    remainder = total % 11
    check = 0 if remainder <= 1 else 11 - remainder
    return check == int(digits[11])


def contains_my_number(text: str) -> bool:
    normalised = unicodedata.normalize("NFKC", text)
    return any(is_my_number("".join(m.groups())) for m in _TWELVE_DIGITS.finditer(normalised))


def validate_no_my_number(value: object) -> None:
    if isinstance(value, str) and contains_my_number(value):
        raise ValidationError(
            _("個人番号（マイナンバー）と思われる12桁の番号は登録できません（番号法第20条）。"),
            code="my_number",
        )


def strings_in(value: object) -> Iterable[str]:
    """Every string inside a JSON-like value, for the My Number scan of structured fields."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from strings_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings_in(v)


validate_email = EmailValidator(message=_("メールアドレスの形式が正しくありません（例: taro@example.com）。"))


def validate_phone(value: str) -> None:
    if value and normalise_phone(value) is None:
        raise ValidationError(
            _("電話番号として正しくありません（例: 090-1234-5678、03-1234-5678、+44 20 7946 0958）。"),
            code="phone",
        )


_POSTAL = re.compile(r"^〒?\s*(\d{3})-?(\d{4})$")


def normalise_postal_code(value: str) -> str | None:
    m = _POSTAL.match(unicodedata.normalize("NFKC", value).strip().replace("ー", "-"))
    return f"{m.group(1)}-{m.group(2)}" if m else None


def validate_postal_code(value: str) -> None:
    if value and normalise_postal_code(value) is None:
        raise ValidationError(
            _("郵便番号は 〒NNN-NNNN の形式で入力してください（例: 100-0005）。"), code="postal"
        )


_KANA = re.compile(r"^[\u3041-\u3096\u30a1-\u30fa\u30fc\u30fb\u309b\u309c\u30fd\u30fe\s　]+$")


def validate_kana(value: str) -> None:
    if value and not _KANA.match(unicodedata.normalize("NFKC", value)):
        raise ValidationError(_("フリガナはカタカナまたはひらがなで入力してください。"), code="kana")
