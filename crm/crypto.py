"""Field-level encryption and blind indexes for personal data.

Encryption: AES-256-GCM (authenticated encryption, `cryptography`'s AESGCM) under keys from
FIELD_ENCRYPTION_KEYS, never from SECRET_KEY. Several keys can be live at once: the first encrypts, every key
decrypts, and `rotate_token()` / `manage.py rotate_keys` re-encrypt under the first.

A token is url-safe base64 of `version (1 byte, 0x02) | key id (4) | nonce (12) | ciphertext | tag (16)`:

- the AES key is derived from the configured key with HKDF-SHA256 (its own `info`), so the same configured
  key never serves two algorithms;
- the key id (the first 4 bytes of a SHA-256 of the derived key) picks the key directly, instead of trying
  each key in turn; the version and key id are authenticated as associated data;
- the nonce is 96 random bits per encryption (NIST SP 800-38D §8.2.2; far below 2^32 encryptions per key at
  this scale, and rotation starts a new key).

Tokens written before this format (Fernet: AES-128-CBC + HMAC-SHA256, version byte 0x80) still decrypt
through MultiFernet; `rotate_keys` rewrites them in the current format. Why the change: one Fernet decryption
costs ~15 µs of Python around the cipher (a list page opens 200 values, an export millions); AES-GCM costs
well under 1 µs, and its tokens are ~40 % shorter.

A token that no key opens raises `DecryptionError`: ciphertext is never returned as if it were data.

Blind index: HMAC-SHA256 under BLIND_INDEX_KEY (its own key) over a normalised value, so exact-match search
runs on an indexed column without decrypting the table. It reveals equality, so only searched fields get one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import unicodedata
from functools import lru_cache

import jaconv
import phonenumbers
from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


class DecryptionError(RuntimeError):
    """No configured key opens this token: wrong key set, or the data was tampered with."""


class KeyConfigurationError(RuntimeError):
    """FIELD_ENCRYPTION_KEYS is empty or holds a value that is not a 32-byte url-safe base64 key."""


VERSION = b"\x02"  # AES-256-GCM token; legacy Fernet tokens start with 0x80
_HEADER = 5  # version + key id
_NONCE = 12
_HKDF_INFO = b"crm.field-encryption.aes-256-gcm.v2"


class _Key:
    """One configured key: its AES-256-GCM cipher and id, and the legacy Fernet for old tokens."""

    __slots__ = ("aead", "fernet", "header")

    def __init__(self, configured: str | bytes) -> None:
        text = configured.decode("ascii") if isinstance(configured, bytes) else configured
        material = base64.urlsafe_b64decode(text.encode("ascii"))
        if len(material) != 32:
            raise ValueError("not 32 bytes")
        self.fernet = Fernet(text)
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(material)
        self.aead = AESGCM(derived)
        self.header = VERSION + hashlib.sha256(b"crm.field-key-id\x00" + derived).digest()[:4]


@lru_cache(maxsize=1)
def _keys() -> tuple[_Key, ...]:
    """One _Key per configured key, newest first."""
    keys = list(settings.FIELD_ENCRYPTION_KEYS)
    if not keys:
        raise KeyConfigurationError("FIELD_ENCRYPTION_KEYS is empty.")
    try:
        return tuple(_Key(k) for k in keys)
    except (ValueError, TypeError, binascii.Error) as exc:
        # Never echo the key itself.
        raise KeyConfigurationError(
            "FIELD_ENCRYPTION_KEYS holds a value that is not a key (32 url-safe base64 bytes)."
        ) from exc


@lru_cache(maxsize=1)
def _by_header() -> dict[bytes, tuple[int, _Key]]:
    return {key.header: (i, key) for i, key in enumerate(_keys())}


def check_key_configuration() -> None:
    """Raise KeyConfigurationError unless every FIELD_ENCRYPTION_KEYS entry is a usable key."""
    _keys()


@receiver(setting_changed)
def _reset_keys(*, setting: str, **kwargs: object) -> None:
    if setting in {"FIELD_ENCRYPTION_KEYS", "BLIND_INDEX_KEY"}:
        _keys.cache_clear()
        _by_header.cache_clear()
        _index_key.cache_clear()


def _seal(key: _Key, clear: bytes) -> str:
    nonce = os.urandom(_NONCE)
    sealed = key.aead.encrypt(nonce, clear, key.header)
    return base64.urlsafe_b64encode(key.header + nonce + sealed).decode("ascii")


def _open(token: str) -> tuple[int, bytes]:
    """(index of the key that opened it, clear bytes); raises InvalidToken when none does."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise InvalidToken from exc
    if raw[:1] != VERSION:
        for i, key in enumerate(_keys()):  # legacy token: Fernet's own HMAC check picks the key
            try:
                return i, key.fernet.decrypt(token.encode("ascii"))
            except InvalidToken:
                continue
        raise InvalidToken
    found = _by_header().get(raw[:_HEADER])
    if found is None or len(raw) < _HEADER + _NONCE + 16:
        raise InvalidToken
    index, key = found
    try:
        nonce, sealed = raw[_HEADER : _HEADER + _NONCE], raw[_HEADER + _NONCE :]
        return index, key.aead.decrypt(nonce, sealed, raw[:_HEADER])
    except InvalidTag as exc:
        raise InvalidToken from exc


def is_current(token: str) -> bool:
    """True when the token is in the current format under the newest key (nothing for rotation to do)."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeError):
        return False
    return raw[:_HEADER] == _keys()[0].header


def encrypt_str(value: str) -> str:
    """Encrypt text under the newest key; returns the token as ASCII text."""
    return _seal(_keys()[0], value.encode("utf-8"))


def decrypt_str(token: str, *, where: str = "") -> str:
    """Decrypt a token produced by `encrypt_str` (or a legacy Fernet token) with any configured key, or
    raise DecryptionError.

    `where` names the column ("crm.Customer.email") for the operator; the token itself is never put in the
    message, so a wrong key can neither show ciphertext as data nor leak it into logs.
    """
    try:
        return _open(token)[1].decode("utf-8")
    except (InvalidToken, UnicodeError) as exc:
        column = f" ({where})" if where else ""
        raise DecryptionError(
            f"An encrypted field{column} could not be decrypted with any key in FIELD_ENCRYPTION_KEYS."
        ) from exc


def rotate_token(token: str) -> str:
    """Re-encrypt a token under the newest key, in the current format."""
    try:
        return _seal(_keys()[0], _open(token)[1])
    except InvalidToken as exc:
        raise DecryptionError("A token could not be rotated: no configured key opens it.") from exc


def token_key_index(token: str) -> int | None:
    """Which configured key opens this token (0 = newest), or None. Used by the rotation report."""
    try:
        return _open(token)[0]
    except InvalidToken:
        return None


def reencrypt_token(token: str) -> tuple[int | None, str | None]:
    """(index of the key that opens `token`, the token under the newest key in the current format, or None
    when it is already there). (None, None) when no key opens it."""
    try:
        index, clear = _open(token)
    except InvalidToken:
        return None, None
    if index == 0 and is_current(token):
        return 0, None
    return index, _seal(_keys()[0], clear)


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
