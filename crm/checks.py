"""Start-up checks: the encryption keys must open the canary, or nothing starts.

`verify_encryption_canary()` is called by the WSGI and ASGI entry points (so gunicorn's workers fail to
boot), by the Celery worker before it consumes anything (config/celery.py), and it is a Django system check
(`manage.py check --database default`, error crm.E001).
"""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Tags, Warning, register

from crm.crypto import DecryptionError, KeyConfigurationError, UnboundTokenError, check_key_configuration
from crm.models import Customer, EncryptionCanary

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


def audit_guard_liftable_by(using: str = "default") -> list[str]:
    """Why the role this process connects as could lift the audit trail's database guard, if it can: it is a
    superuser, a member of crm_maintenance (crm migration 0015), or a member of the audit table's owner (an
    owner may disable the triggers). Empty for the role README's "Database roles" asks for."""
    from django.db import connections

    with connections[using].cursor() as cur:
        cur.execute(
            "SELECT r.rolsuper,"
            " EXISTS (SELECT 1 FROM pg_roles m WHERE m.rolname = 'crm_maintenance')"
            "   AND pg_has_role(current_user, 'crm_maintenance', 'MEMBER'),"
            " COALESCE((SELECT pg_has_role(current_user, t.tableowner, 'MEMBER') FROM pg_tables t"
            "   WHERE t.schemaname = current_schema() AND t.tablename = 'crm_auditentry'), false)"
            " FROM pg_roles r WHERE r.rolname = current_user"
        )
        superuser, maintenance, owner = cur.fetchone()
    reasons = [("superuser", superuser), ("member of crm_maintenance", maintenance), ("owner", owner)]
    return [reason for reason, holds in reasons if holds]


@register(Tags.database)
def audit_guard_role_check(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """crm.W003 (production): the application's database role must not be able to lift the audit guard, or
    its credentials alone could wipe the audit trail and the consent ledger."""
    from django.conf import settings

    if not kwargs.get("databases") or not getattr(settings, "PRODUCTION", False):
        return []
    reasons = audit_guard_liftable_by()
    if not reasons:
        return []
    return [
        Warning(
            f"The database role can lift the audit trail's guard ({', '.join(reasons)}). "
            "アプリケーションのデータベースロールが監査ログの保護を解除できます。",
            hint="Connect as a role that owns no table, is not superuser and is not granted crm_maintenance "
            "(README: Database roles). 所有者でも crm_maintenance の所属でもないロールで接続してください。",
            id="crm.W003",
        )
    ]
