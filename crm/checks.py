"""Start-up checks: the encryption keys must open the canary, or nothing starts.

`verify_encryption_canary()` is called by the WSGI entry point, by every Celery worker process and by
`./dev up`; it is also a Django system check (`manage.py check --database default`).
"""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Tags, register
from django.db import DatabaseError

CANARY_VALUE = "appi-crm-encryption-canary-v1"


class EncryptionKeyError(RuntimeError):
    """The configured keys do not open data encrypted earlier: refusing to run."""


def verify_encryption_canary() -> None:
    """Decrypt the canary row with the configured keys; raise EncryptionKeyError if they cannot."""
    from crm.crypto import DecryptionError, KeyConfigurationError
    from crm.models import EncryptionCanary

    try:
        canary = EncryptionCanary.objects.filter(pk=1).first()
    except (DecryptionError, KeyConfigurationError) as exc:
        raise EncryptionKeyError(
            "FIELD_ENCRYPTION_KEYS cannot decrypt existing data (wrong or missing key). "
            "Add the key that encrypted the data to FIELD_ENCRYPTION_KEYS; refusing to start."
        ) from exc
    except DatabaseError:
        return  # before the first migration there is nothing to protect yet
    if canary is not None and canary.token != CANARY_VALUE:
        raise EncryptionKeyError("The encryption canary decrypted to an unexpected value; refusing to start.")


@register(Tags.database)
def encryption_keys_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    if not kwargs.get("databases"):
        return []
    try:
        verify_encryption_canary()
    except EncryptionKeyError as exc:
        return [Error(str(exc), id="crm.E001")]
    return []
