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
def _fernets() -> tuple[Fernet, ...]:
    """One Fernet per configured key, newest first."""
    keys = list(settings.FIELD_ENCRYPTION_KEYS)
    if not keys:
        raise KeyConfigurationError("FIELD_ENCRYPTION_KEYS is empty.")
    try:
        return tuple(Fernet(k) for k in keys)
    except (ValueError, TypeError) as exc:
        # Never echo the key itself.
        raise KeyConfigurationError(
            "FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe base64 bytes)."
        ) from exc


def check_key_configuration() -> None:
    """Raise KeyConfigurationError unless every FIELD_ENCRYPTION_KEYS entry is a Fernet key."""
    _fernets()


@lru_cache(maxsize=1)
def _keyring() -> MultiFernet:
    return MultiFernet(list(_fernets()))


@receiver(setting_changed)
def _reset_keys(*, setting: str, **kwargs: object) -> None:
    if setting in {"FIELD_ENCRYPTION_KEYS", "BLIND_INDEX_KEY"}:
        _fernets.cache_clear()
        _keyring.cache_clear()
        _index_key.cache_clear()


def encrypt_str(value: str) -> str:
    """Encrypt text under the newest key; returns the Fernet token as ASCII text."""
    return _keyring().encrypt(value.encode("utf-8")).decode("ascii")


def decrypt_str(token: str, *, where: str = "") -> str:
    """Decrypt a token produced by `encrypt_str` with any configured key, or raise DecryptionError.

    `where` names the column ("crm.Customer.email") for the operator; the token itself is never put in the
    message, so a wrong key can neither show ciphertext as data nor leak it into logs.
    """
    try:
        return _keyring().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError) as exc:
        column = f" ({where})" if where else ""
        raise DecryptionError(
            f"An encrypted field{column} could not be decrypted with any key in FIELD_ENCRYPTION_KEYS."
        ) from exc


def rotate_token(token: str) -> str:
    """Re-encrypt a token under the newest key (MultiFernet.rotate)."""
    try:
        return _keyring().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError) as exc:
        raise DecryptionError("A token could not be rotated: no configured key opens it.") from exc


def token_key_index(token: str) -> int | None:
    """Which configured key opens this token (0 = newest), or None. Used by the rotation report.

    A wrong key fails on the HMAC check before any decryption, so trying the keys in turn is cheap.
    """
    try:
        raw = token.encode("ascii")
    except UnicodeError:
        return None
    for i, fernet in enumerate(_fernets()):
        try:
            fernet.decrypt(raw)
        except InvalidToken:
            continue
        return i
    return None


def reencrypt_token(token: str) -> tuple[int | None, str | None]:
    """(index of the key that opens `token`, the token under the newest key or None if already there).

    (None, None) when no key opens it. One pass over the keys: the key found is reused to re-encrypt.
    """
    try:
        raw = token.encode("ascii")
    except UnicodeError:
        return None, None
    fernets = _fernets()
    for i, fernet in enumerate(fernets):
        try:
            clear = fernet.decrypt(raw)
        except InvalidToken:
            continue
        if i == 0:
            return 0, None
        return i, fernets[0].encrypt(clear).decode("ascii")
    return None, None


def key_fingerprint(index: int) -> str:
    """A short, non-secret name for a configured key (first 8 hex of SHA-256), for reports and audit."""
    key = settings.FIELD_ENCRYPTION_KEYS[index]
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()[:8]


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
