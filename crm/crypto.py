"""Field-level encryption and blind indexes for personal data.

Encryption: Fernet (AES-128-CBC + HMAC-SHA256, authenticated) from the `cryptography` package, through
MultiFernet so that several keys can be live at once: the first key encrypts, every key decrypts, and
`rotate()` re-encrypts a token under the first. Keys come from FIELD_ENCRYPTION_KEYS, never from SECRET_KEY.
A token that no key opens raises `DecryptionError`: ciphertext is never returned as if it were data.

Blind index: HMAC-SHA256 under BLIND_INDEX_KEY (its own key) over a normalised value, so exact-match search
runs on an indexed column without decrypting the table. It reveals equality, so only searched fields get one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from functools import lru_cache

import jaconv
import phonenumbers
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


class DecryptionError(RuntimeError):
    """No configured key opens this token: wrong key set, or the data was tampered with."""


class KeyConfigurationError(RuntimeError):
    """FIELD_ENCRYPTION_KEYS is empty or holds a value that is not a Fernet key."""


@lru_cache(maxsize=1)
def _keyring() -> MultiFernet:
    keys = list(settings.FIELD_ENCRYPTION_KEYS)
    if not keys:
        raise KeyConfigurationError("FIELD_ENCRYPTION_KEYS is empty.")
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except (ValueError, TypeError) as exc:
        # Never echo the key itself.
        raise KeyConfigurationError(
            "FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe base64 bytes)."
        ) from exc


@receiver(setting_changed)
def _reset_keys(*, setting: str, **kwargs: object) -> None:
    if setting in {"FIELD_ENCRYPTION_KEYS", "BLIND_INDEX_KEY"}:
        _keyring.cache_clear()
        _index_key.cache_clear()


def encrypt_str(value: str) -> str:
    """Encrypt text under the newest key; returns the Fernet token as ASCII text."""
    return _keyring().encrypt(value.encode("utf-8")).decode("ascii")


def decrypt_str(token: str) -> str:
    """Decrypt a token produced by `encrypt_str` with any configured key, or raise DecryptionError."""
    try:
        return _keyring().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeEncodeError) as exc:
        raise DecryptionError(
            "An encrypted field could not be decrypted with any key in FIELD_ENCRYPTION_KEYS."
        ) from exc


def rotate_token(token: str) -> str:
    """Re-encrypt a token under the newest key (MultiFernet.rotate)."""
    try:
        return _keyring().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken as exc:
        raise DecryptionError("A token could not be rotated: no configured key opens it.") from exc


def token_key_index(token: str) -> int | None:
    """Which configured key opens this token (0 = newest), or None. Used by the rotation report."""
    for i, key in enumerate(settings.FIELD_ENCRYPTION_KEYS):
        try:
            Fernet(key).decrypt(token.encode("ascii"))
        except InvalidToken:
            continue
        return i
    return None


# --- blind indexes ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _index_key() -> bytes:
    key = settings.BLIND_INDEX_KEY
    if not key:
        raise KeyConfigurationError("BLIND_INDEX_KEY is empty.")
    return key.encode("utf-8")


def blind_index(kind: str, normalised: str) -> str:
    """Keyed hash of an already normalised value; `kind` separates the index domains."""
    mac = hmac.new(_index_key(), f"{kind}\x1f{normalised}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


_SPACES = re.compile(r"\s+")


def normalise_email(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip().casefold()


def normalise_phone(value: str, region: str = "JP") -> str | None:
    """E.164 form (+819012345678), or None when the value is not a valid phone number."""
    try:
        number = phonenumbers.parse(unicodedata.normalize("NFKC", value), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_name(value: str) -> str:
    """NFKC, spaces removed, case-folded, hiragana folded to katakana: 'やまだ たろう' == 'ヤマダタロウ'."""
    text = _SPACES.sub("", unicodedata.normalize("NFKC", value)).casefold()
    return jaconv.hira2kata(text)


def email_index(value: str) -> str:
    return blind_index("email", normalise_email(value))


def phone_index(value: str) -> str | None:
    e164 = normalise_phone(value)
    return blind_index("phone", e164) if e164 else None


def name_index(value: str) -> str:
    return blind_index("name", normalise_name(value))
