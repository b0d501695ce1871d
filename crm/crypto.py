"""Field-level encryption and blind indexes for personal data.

Encryption: AES-256-GCM (authenticated encryption, `cryptography`'s AESGCM) under keys from
FIELD_ENCRYPTION_KEYS, never from SECRET_KEY. Several keys can be live at once: the first encrypts, every key
decrypts, and `rotate_token()` / `manage.py rotate_keys` re-encrypt under the first.

A token is url-safe base64 of `version (1 byte, 0x03) | key id (4) | nonce (12) | ciphertext | tag (16)`:

- the AES key is derived from the configured key with HKDF-SHA256 (its own `info`), so the same configured
  key never serves two algorithms;
- the key id (the first 4 bytes of a SHA-256 of the derived key) picks the key directly, instead of trying
  each key in turn;
- the associated data (authenticated, not stored) is `version | key id | label`, where the label names where
  the token lives: "crm.Customer.email" for a model field (`_EncryptedMixin.encrypted_column_label`), a
  purpose such as "crm.search_token" otherwise. A token copied into another column or table, or handed to
  another purpose, fails its tag and raises DecryptionError naming the column that read it: never the other
  column's value. Binding is to the column, not the row (the row id is not known before an INSERT, and
  rotation, visitor links and bulk loads copy tokens within a column); a token moved to another row of the
  same column still opens;
- the nonce is 96 random bits per encryption (NIST SP 800-38D §8.2.2; far below 2^32 encryptions per key at
  this scale, and rotation starts a new key).

Unbound tokens, written before the label was authenticated, still open until rotated: format 0x02 (same
layout, associated data = version | key id) and the first release's Fernet tokens (AES-128-CBC +
HMAC-SHA256, version byte 0x80, through each key's Fernet). `manage.py rotate_keys` rewrites both as bound
tokens. While any is left, whoever can write SQL can plant one in any column (an unbound token carries no
column to check), so once `rotate_keys --dry-run` counts none, set FIELD_TOKENS_REQUIRE_BOUND: reads then
refuse unbound tokens (UnboundTokenError), and only rotation still opens them.

Why AES-GCM rather than Fernet: one Fernet decryption costs ~15 µs of Python around the cipher (a list page
opens 200 values, an export millions); AES-GCM costs well under 1 µs, and its tokens are ~40 % shorter.
Authenticating the label adds its few bytes to GHASH (bench/crypto_bench.py).

A token that no key opens raises `DecryptionError`: ciphertext is never returned as if it were data.

Blind index: HMAC-SHA256 under BLIND_INDEX_KEY (its own key) over a normalised value, so exact-match search
runs on an indexed column without decrypting the table. It reveals equality, so only searched fields get one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import os
import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from typing import IO, Any

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
    """No configured key opens this token as a value of this column: wrong key set, a token moved from
    another column, or tampered data."""


class UnboundTokenError(DecryptionError):
    """An unbound token (format 0x02 or Fernet) was read while FIELD_TOKENS_REQUIRE_BOUND is on."""


class KeyConfigurationError(RuntimeError):
    """FIELD_ENCRYPTION_KEYS is empty or holds a value that is not a 32-byte url-safe base64 key."""


VERSION = b"\x03"  # AES-256-GCM token bound to its column
UNBOUND_VERSION = b"\x02"  # AES-256-GCM token of the earlier release, label not authenticated
_FERNET_VERSION = b"\x80"  # the first release's Fernet tokens (unbound too)
_HEADER = 5  # version + key id
_NONCE = 12
_TAG = 16
_HKDF_INFO = b"crm.field-encryption.aes-256-gcm.v2"  # unchanged for 0x03: the version byte is in the AAD


class _Key:
    """One configured key: its AES-256-GCM cipher and id, and the legacy Fernet for old tokens."""

    __slots__ = ("aead", "fernet", "header", "key_id")

    def __init__(self, configured: str | bytes) -> None:
        text = configured.decode("ascii") if isinstance(configured, bytes) else configured
        material = base64.urlsafe_b64decode(text.encode("ascii"))
        if len(material) != 32:
            raise ValueError("not 32 bytes")
        self.fernet = Fernet(text)
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(material)
        self.aead = AESGCM(derived)
        self.key_id = hashlib.sha256(b"crm.field-key-id\x00" + derived).digest()[:4]
        self.header = VERSION + self.key_id


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
def _by_key_id() -> dict[bytes, tuple[int, _Key]]:
    return {key.key_id: (i, key) for i, key in enumerate(_keys())}


def check_key_configuration() -> None:
    """Raise KeyConfigurationError unless every FIELD_ENCRYPTION_KEYS entry is a usable key."""
    _keys()


@receiver(setting_changed)
def _reset_keys(*, setting: str, **kwargs: object) -> None:
    if setting in {"FIELD_ENCRYPTION_KEYS", "BLIND_INDEX_KEY"}:
        _keys.cache_clear()
        _by_key_id.cache_clear()
        _index_key.cache_clear()


def _label(bound_to: str) -> bytes:
    # An empty label would bind nothing: refuse it rather than write a token any column accepts.
    if not isinstance(bound_to, str) or not bound_to:
        raise ValueError("A token is bound to a column label such as 'crm.Customer.email'.")
    return bound_to.encode("utf-8")


def _seal(key: _Key, clear: bytes, label: bytes) -> str:
    nonce = os.urandom(_NONCE)
    # header and label are both authenticated; the header has a fixed length, so the split is unambiguous.
    sealed = key.aead.encrypt(nonce, clear, key.header + label)
    return base64.urlsafe_b64encode(key.header + nonce + sealed).decode("ascii")


class _Unbound(InvalidToken):
    """An unbound token met where only bound ones are accepted (not tried against any key)."""


def _open(token: str, label: bytes, *, accept_unbound: bool) -> tuple[int, bytes]:
    """(index of the key that opened it, clear bytes); raises InvalidToken when none does."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise InvalidToken from exc
    version = raw[:1]
    if version not in (VERSION, UNBOUND_VERSION, _FERNET_VERSION):
        raise InvalidToken
    if version == _FERNET_VERSION:
        if not accept_unbound:
            raise _Unbound
        for i, key in enumerate(_keys()):  # legacy token: Fernet's own HMAC check picks the key
            try:
                return i, key.fernet.decrypt(token.encode("ascii"))
            except InvalidToken:
                continue
        raise InvalidToken
    if version == UNBOUND_VERSION:
        if not accept_unbound:
            raise _Unbound
        label = b""
    found = _by_key_id().get(raw[1:_HEADER])
    if found is None or len(raw) < _HEADER + _NONCE + _TAG:
        raise InvalidToken
    index, key = found
    try:
        nonce, sealed = raw[_HEADER : _HEADER + _NONCE], raw[_HEADER + _NONCE :]
        return index, key.aead.decrypt(nonce, sealed, raw[:_HEADER] + label)
    except InvalidTag as exc:
        raise InvalidToken from exc


def _unbound_accepted() -> bool:
    return not getattr(settings, "FIELD_TOKENS_REQUIRE_BOUND", False)


def is_bound(token: str) -> bool:
    """True when the token is in the bound format (0x03), under whichever key."""
    try:
        return base64.urlsafe_b64decode(token.encode("ascii"))[:1] == VERSION
    except (binascii.Error, ValueError, UnicodeError):
        return False


def is_current(token: str) -> bool:
    """True when the token is in the bound format under the newest key (nothing for rotation to do)."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeError):
        return False
    return raw[:_HEADER] == _keys()[0].header


def encrypt_str(value: str, *, bound_to: str) -> str:
    """Encrypt text under the newest key, bound to `bound_to` (the column's label, "crm.Customer.email", or
    a purpose's); returns the token as ASCII text. Only `decrypt_str(token, bound_to=<the same>)` opens it."""
    return _seal(_keys()[0], value.encode("utf-8"), _label(bound_to))


def decrypt_str(token: str, *, bound_to: str, require_bound: bool | None = None) -> str:
    """Decrypt a token of `bound_to` (or, unless FIELD_TOKENS_REQUIRE_BOUND or `require_bound`, an unbound
    0x02 or Fernet token) with any configured key, or raise DecryptionError.

    The message names `bound_to` for the operator; the token itself is never put in it, so neither a wrong
    key nor a token moved from another column can show ciphertext, or the other column's value, as data.
    """
    accept_unbound = _unbound_accepted() if require_bound is None else not require_bound
    try:
        return _open(token, _label(bound_to), accept_unbound=accept_unbound)[1].decode("utf-8")
    except _Unbound as exc:
        raise UnboundTokenError(
            f"An encrypted value ({bound_to}) is an unbound token, refused because "
            "FIELD_TOKENS_REQUIRE_BOUND is on; `manage.py rotate_keys` rewrites it bound to its column."
        ) from exc
    except (InvalidToken, UnicodeError) as exc:
        raise DecryptionError(
            f"An encrypted value ({bound_to}) could not be decrypted: no key in FIELD_ENCRYPTION_KEYS opens "
            "it as a value of this column (a wrong key, a token moved from another column, or tampering)."
        ) from exc


def rotate_token(token: str, *, bound_to: str) -> str:
    """Re-encrypt a token of `bound_to` (bound or not) under the newest key, in the bound format."""
    label = _label(bound_to)
    try:
        return _seal(_keys()[0], _open(token, label, accept_unbound=True)[1], label)
    except InvalidToken as exc:
        raise DecryptionError(
            f"A token ({bound_to}) could not be rotated: no configured key opens it."
        ) from exc


def token_key_index(token: str, *, bound_to: str) -> int | None:
    """Which configured key opens this token as a value of `bound_to` (0 = newest), or None. Unbound tokens
    count (they are what rotation is for). Used by the rotation report."""
    try:
        return _open(token, _label(bound_to), accept_unbound=True)[0]
    except InvalidToken:
        return None


def reencrypt_token(token: str, *, bound_to: str) -> tuple[int | None, str | None]:
    """(index of the key that opens `token` as a value of `bound_to`, the token under the newest key bound to
    it, or None when it is already there). (None, None) when no key opens it. Unbound tokens are opened
    whatever FIELD_TOKENS_REQUIRE_BOUND says: rotation is how they become bound."""
    label = _label(bound_to)
    try:
        index, clear = _open(token, label, accept_unbound=True)
    except InvalidToken:
        return None, None
    if index == 0 and is_current(token):
        return 0, None
    return index, _seal(_keys()[0], clear, label)


def key_fingerprint(index: int) -> str:
    """A short, non-secret name for a configured key (first 8 hex of SHA-256), for reports and audit."""
    key = settings.FIELD_ENCRYPTION_KEYS[index]
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()[:8]


# --- files -----------------------------------------------------------------------------------------

# A file too large to seal in one piece (a disclosure package) is sealed in chunks under the same keys: the
# STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015, as Tink's and age's streaming AEAD): each
# chunk is its own AES-256-GCM message whose associated data binds the file header, the label, the chunk's
# index and whether it is the last one, so chunks cannot be reordered, dropped, repeated, moved to another
# file or cut off at a chunk boundary without the reader raising DecryptionError.
#   file  = magic (5) | key id (4) | chunk size (4, big-endian) | chunk*
#   chunk = nonce (12) | ciphertext | tag (16)      (every chunk but the last holds `chunk size` clear bytes)
FILE_MAGIC = b"CRMF\x01"
_FILE_HEADER = len(FILE_MAGIC) + 4 + 4
FILE_CHUNK = 1 << 20


def _chunk_aad(header: bytes, label: bytes, index: int, final: bool) -> bytes:
    return header + label + b"\x00" + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


def encrypt_stream(
    src: IO[bytes], dst: IO[bytes], *, bound_to: str, chunk_size: int = FILE_CHUNK
) -> tuple[int, str]:
    """Read `src` to its end and write it sealed to `dst` under the newest key, bound to `bound_to` (e.g.
    "consent.DisclosurePackage:12"). Returns the clear size and its SHA-256 (hex), computed on the way."""
    key = _keys()[0]
    label = _label(bound_to)
    header = FILE_MAGIC + key.key_id + chunk_size.to_bytes(4, "big")
    dst.write(header)
    digest = hashlib.sha256()
    size = 0
    current = src.read(chunk_size)
    index = 0
    while True:
        following = src.read(chunk_size) if len(current) == chunk_size else b""
        final = not following
        digest.update(current)
        size += len(current)
        nonce = os.urandom(_NONCE)
        dst.write(nonce + key.aead.encrypt(nonce, current, _chunk_aad(header, label, index, final)))
        if final:
            return size, digest.hexdigest()
        current, index = following, index + 1


def stream_key_index(src: IO[bytes]) -> int | None:
    """The place in FIELD_ENCRYPTION_KEYS (0: the newest) of the key a file written by encrypt_stream is
    sealed under, from its header alone; None when it is no such file or no configured key sealed it."""
    header = src.read(_FILE_HEADER)
    if len(header) != _FILE_HEADER or not header.startswith(FILE_MAGIC):
        return None
    found = _by_key_id().get(header[len(FILE_MAGIC) : len(FILE_MAGIC) + 4])
    return None if found is None else found[0]


class _ChunksReader(io.RawIOBase):
    """An iterator of byte chunks as a readable file (what encrypt_stream reads), holding one chunk."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            self._left = next(self._chunks, b"")
            if not self._left:
                return 0
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def reseal_stream(src: IO[bytes], dst: IO[bytes], *, bound_to: str) -> tuple[int, str]:
    """Write the file `src` (sealed by encrypt_stream for `bound_to`, under any configured key) to `dst`
    sealed under the newest key, chunk by chunk: the clear bytes never rest anywhere. Returns the clear size
    and SHA-256, as encrypt_stream does (the same as when it was first sealed)."""
    clear = io.BufferedReader(_ChunksReader(decrypt_stream(src, bound_to=bound_to)), buffer_size=FILE_CHUNK)
    return encrypt_stream(clear, dst, bound_to=bound_to)


def decrypt_stream(src: IO[bytes], *, bound_to: str) -> Iterator[bytes]:
    """The clear chunks of a file written by encrypt_stream for `bound_to`; raises DecryptionError (naming
    the label, never the content) on a wrong key, another file's content, tampering or truncation."""
    label = _label(bound_to)
    header = src.read(_FILE_HEADER)
    found = _by_key_id().get(header[len(FILE_MAGIC) : len(FILE_MAGIC) + 4])
    if len(header) != _FILE_HEADER or not header.startswith(FILE_MAGIC) or found is None:
        raise DecryptionError(f"An encrypted file ({bound_to}) has no header a configured key opens.")
    key = found[1]
    block = int.from_bytes(header[-4:], "big") + _NONCE + _TAG
    current = src.read(block)
    index = 0
    while True:
        following = src.read(block) if len(current) == block else b""
        final = not following
        if len(current) < _NONCE + _TAG:
            raise DecryptionError(f"An encrypted file ({bound_to}) is truncated.")
        try:
            yield key.aead.decrypt(
                current[:_NONCE], current[_NONCE:], _chunk_aad(header, label, index, final)
            )
        except InvalidTag as exc:
            raise DecryptionError(
                f"An encrypted file ({bound_to}) could not be decrypted: a wrong key, another file's "
                "content, tampering or truncation."
            ) from exc
        if final:
            return
        current, index = following, index + 1


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
