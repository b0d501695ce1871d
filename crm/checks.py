"""Start-up checks: the encryption keys must open the canary, or nothing starts.

`verify_encryption_canary()` is called by the WSGI and ASGI entry points (so gunicorn's workers fail to
boot), by the Celery worker before it consumes anything (config/celery.py), and it is a Django system check
(`manage.py check --database default`, error crm.E001).
"""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Tags, Warning, register

CANARY_VALUE = "appi-crm-encryption-canary-v1"


class EncryptionKeyError(RuntimeError):
    """The configured keys do not open data encrypted earlier: refusing to run."""


_WRONG_KEY = (
    "FIELD_ENCRYPTION_KEYS cannot decrypt existing data (wrong or missing key). "
    "Add the key that encrypted the data to FIELD_ENCRYPTION_KEYS; refusing to start. "
    "暗号鍵が既存データを復号できません。起動を中止します。"
)

_UNBOUND = (
    "FIELD_TOKENS_REQUIRE_BOUND is on but stored data still holds unbound tokens (written before tokens were "
    "bound to their column). Turn it off, run `manage.py rotate_keys` until `--dry-run` counts 0 unbound, "
    "then turn it on; refusing to start. 列に結び付いていない暗号トークンが残っています。起動を中止します。"
)


def verify_encryption_canary() -> None:
    """Decrypt the canary row with the configured keys; raise EncryptionKeyError if they cannot.

    Without the canary row (a flushed test database) the newest customer row stands in for it: the point is
    that the keys open what is stored, and a missing canary must not turn the check into a silent pass.
    """
    from django.db import connection

    from crm.crypto import DecryptionError, KeyConfigurationError, UnboundTokenError, check_key_configuration
    from crm.models import Customer, EncryptionCanary

    try:
        check_key_configuration()
    except KeyConfigurationError as exc:
        raise EncryptionKeyError(f"{exc} Refusing to start. 暗号鍵の設定が不正です。") from exc
    if EncryptionCanary._meta.db_table not in connection.introspection.table_names():
        return  # before the first migration there is nothing to protect yet (`migrate` runs this check)
    # Any other database error propagates: a check that cannot run must not count as passed.
    try:
        canary = EncryptionCanary.objects.filter(pk=1).first()
        if canary is None:
            # Any encrypted column will do; family_name is required on every customer.
            Customer.objects.only("family_name").order_by("-pk").first()
    except UnboundTokenError as exc:
        raise EncryptionKeyError(_UNBOUND) from exc
    except DecryptionError as exc:
        raise EncryptionKeyError(_WRONG_KEY) from exc
    if canary is not None and canary.token != CANARY_VALUE:
        raise EncryptionKeyError("The encryption canary decrypted to an unexpected value; refusing to start.")


@register(Tags.database)
def encryption_keys_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """crm.E001: runs with `manage.py check --database default` (database checks need a database)."""
    if not kwargs.get("databases"):
        return []
    try:
        verify_encryption_canary()
    except EncryptionKeyError as exc:
        return [
            Error(
                str(exc),
                hint="Put the key that encrypted the data back into FIELD_ENCRYPTION_KEYS (newest first).",
                id="crm.E001",
            )
        ]
    return []


def autovacuum_enabled(using: str = "default") -> bool:
    from django.db import connections

    with connections[using].cursor() as cur:
        cur.execute("SHOW autovacuum")
        return cur.fetchone()[0] == "on"


@register(Tags.database)
def autovacuum_check(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """crm.W002: the server must run autovacuum. Every audited write leaves a dead row version when the
    chain seals it, every consent write one in the current-state table; without vacuum they pile up and the
    sealer's queue scan and the state upserts slow down with them."""
    if not kwargs.get("databases"):
        return []
    if autovacuum_enabled():
        return []
    return [
        Warning(
            "PostgreSQL runs with autovacuum off. PostgreSQL の autovacuum が無効です。",
            hint="Set autovacuum = on (the default): audit sealing and consent-state upserts leave dead rows "
            "that only vacuum reclaims. 監査ログの封印と同意状態の更新で不要行が増え続けます。",
            id="crm.W002",
        )
    ]
