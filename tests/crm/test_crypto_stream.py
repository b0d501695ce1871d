"""Files sealed in chunks under the field keys (crm.crypto.encrypt_stream / decrypt_stream): the disclosure
packages at rest. Whatever is changed, moved, cut or reordered raises DecryptionError."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from cryptography.fernet import Fernet

from crm.crypto import (
    FILE_MAGIC,
    DecryptionError,
    decrypt_stream,
    encrypt_stream,
    reseal_stream,
    stream_key_index,
)

LABEL = "consent.DisclosurePackage:7"


def _seal(data: bytes, chunk: int = 64, label: str = LABEL) -> bytes:
    out = io.BytesIO()
    size, digest = encrypt_stream(io.BytesIO(data), out, bound_to=label, chunk_size=chunk)
    assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())
    return out.getvalue()


def _open(sealed: bytes, label: str = LABEL) -> bytes:
    return b"".join(decrypt_stream(io.BytesIO(sealed), bound_to=label))


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 640, 1000])
def test_a_file_reads_back_as_written_whatever_its_size(size):
    # given content of a size below, at and across chunk boundaries
    data = os.urandom(size)
    # when it is sealed and opened
    sealed = _seal(data)
    # then it reads back whole, and none of it is in clear in the file
    assert _open(sealed) == data
    assert sealed.startswith(FILE_MAGIC)
    if size >= 16:
        assert data[:16] not in sealed


def _chunks(sealed: bytes, chunk: int = 64) -> tuple[bytes, list[bytes]]:
    header, rest = sealed[:13], sealed[13:]
    block = chunk + 28
    return header, [rest[i : i + block] for i in range(0, len(rest), block)]


@pytest.mark.parametrize(
    "damage",
    ["flip_a_byte", "cut_at_a_chunk_boundary", "drop_a_chunk", "swap_chunks", "other_label", "cut_inside"],
)
def test_a_damaged_moved_or_truncated_file_is_refused(damage):
    # given a file of several chunks
    data = os.urandom(64 * 4 + 10)
    sealed = _seal(data)
    header, chunks = _chunks(sealed)
    label = LABEL
    # when it is damaged
    if damage == "flip_a_byte":
        bad = bytearray(sealed)
        bad[100] ^= 1
        sealed = bytes(bad)
    elif damage == "cut_at_a_chunk_boundary":
        sealed = header + b"".join(chunks[:3])
    elif damage == "drop_a_chunk":
        sealed = header + b"".join(chunks[:1] + chunks[2:])
    elif damage == "swap_chunks":
        sealed = header + b"".join([chunks[1], chunks[0], *chunks[2:]])
    elif damage == "other_label":
        label = "consent.DisclosurePackage:8"  # another package's row
    else:
        sealed = sealed[:-5]
    # then reading it raises, naming the label and never the content
    with pytest.raises(DecryptionError) as excinfo:
        _open(sealed, label)
    assert label in str(excinfo.value)


def test_a_file_under_a_key_no_longer_configured_is_refused(settings):
    # given a file sealed under the current keys
    sealed = _seal(b"package")
    # when the keys are replaced by another one
    settings.FIELD_ENCRYPTION_KEYS = ["q" * 43 + "="]
    # then it does not open
    with pytest.raises(DecryptionError):
        _open(sealed)


@pytest.mark.parametrize("size", [0, 1, 65, 3 * 1024 * 1024 + 5])
def test_a_file_resealed_under_the_newest_key_reads_back_the_same(settings, size):
    # given a file sealed under the key in use, in small chunks, and a new key put first
    data = os.urandom(size)
    sealed = _seal(data)
    old_keys = list(settings.FIELD_ENCRYPTION_KEYS)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode("ascii"), *old_keys]
    assert stream_key_index(io.BytesIO(sealed)) == 1
    # when it is resealed
    out = io.BytesIO()
    assert reseal_stream(io.BytesIO(sealed), out, bound_to=LABEL) == (size, hashlib.sha256(data).hexdigest())
    # then it is under the new key, opens with it alone as the same bytes, and stays bound to its label
    assert stream_key_index(io.BytesIO(out.getvalue())) == 0
    settings.FIELD_ENCRYPTION_KEYS = settings.FIELD_ENCRYPTION_KEYS[:1]
    assert _open(out.getvalue()) == data
    with pytest.raises(DecryptionError):
        _open(out.getvalue(), label="consent.DisclosurePackage:8")
    assert stream_key_index(io.BytesIO(sealed)) is None  # the old file: no configured key sealed it
