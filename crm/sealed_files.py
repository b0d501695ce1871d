"""Files sealed under the field keys (crm.crypto.encrypt_stream) that live outside the database, registered by
the apps that own them: `manage.py rotate_keys` re-seals them under the newest key as it re-encrypts the
columns, so an old key can leave FIELD_ENCRYPTION_KEYS without leaving a file nobody can open.

crm never imports the apps above it: consent registers its disclosure packages here (consent.registrations).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SealedFile:
    """One sealed file: where it is, what its seal is bound to (also how it is named in output: a model label
    and a primary key, never a value), and `hold`, which locks the row the file belongs to for the length of
    a re-seal and says whether the file is still live (a file its owner deletes meanwhile is left alone)."""

    path: Path
    bound_to: str
    hold: Callable[[], AbstractContextManager[bool]]


# kind (e.g. "consent.DisclosurePackage") → the live files of that kind, read when rotate_keys runs.
PROVIDERS: dict[str, Callable[[], Iterable[SealedFile]]] = {}


def sealed_files_register(kind: str, provider: Callable[[], Iterable[SealedFile]]) -> None:
    PROVIDERS[kind] = provider
