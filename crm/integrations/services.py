"""Writes of the integration API area: issuing and revoking API clients, idempotent replays, last use."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from crm import rawsql
from crm.integrations.models import ApiClient, ApiScope, IdempotencyRecord
from crm.models import Team, TeamMembership
from crm.permissions import ROLE_STAFF
from crm.services import _acting, team_member_add

if TYPE_CHECKING:
    from django.contrib.auth.models import User

SERVICE_USER_PREFIX = "api:"
# Last-use time is written at most this often per client, so authentication stays a read.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


def token_hash(token: str) -> str:
    """SHA-256 of the token: enough for 256 random bits (no dictionary to attack), and cheap per request."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_token(publishable: bool) -> tuple[str, str]:
    """(prefix, token). The prefix is the public lookup half; 'pk_' marks keys meant for web pages."""
    prefix = ("pk_" if publishable else "sk_") + secrets.token_hex(8)
    return prefix, f"{prefix}.{secrets.token_urlsafe(32)}"


def validate_client_scopes(scopes: list[str], allowed_origins: list[str]) -> None:
    valid = set(ApiScope.values)
    unknown = [s for s in scopes if s not in valid]
    if unknown or not scopes:
        raise ValidationError({"scopes": _("スコープを1つ以上、一覧から選んでください。")})
    if ApiScope.COOKIES_WRITE in scopes and len(set(scopes)) > 1:
        # A publishable key sits in page source for anyone to copy: it must be good for nothing else.
        raise ValidationError(
            {
                "scopes": _(
                    "cookies:write は公開キー専用です。他のスコープと同じクライアントに付けられません。"
                )
            }
        )
    for origin in allowed_origins:
        if not isinstance(origin, str) or not origin.startswith(("https://", "http://")) or "*" in origin:
            raise ValidationError(
                {
                    "allowed_origins": _(
                        "オリジンは https://www.example.co.jp の形式で、ワイルドカードは使えません。"
                    )
                }
            )


def api_client_create(
    *,
    name: str,
    team: Team,
    scopes: list[str],
    description: str = "",
    allowed_origins: list[str] | None = None,
    rate_limit_per_minute: int | None = None,
    actor: User | None = None,
) -> tuple[ApiClient, str]:
    """Issue a client and its token. The token is returned once and never stored; only its hash is kept.

    The client's service user (`api:<name>`, unusable password, no admin access) joins `team` as a member,
    which is what lets the API read and change that team's customers through the restrict() gate.
    """
    allowed_origins = list(allowed_origins or [])
    scopes = list(dict.fromkeys(scopes))
    validate_client_scopes(scopes, allowed_origins)
    prefix, token = _new_token(publishable=scopes == [ApiScope.COOKIES_WRITE])
    with transaction.atomic(), _acting(actor):
        user_model = get_user_model()
        user = user_model(username=f"{SERVICE_USER_PREFIX}{name}", is_staff=False, is_active=True)
        user.set_unusable_password()
        client = ApiClient(
            name=name,
            description=description,
            team=team,
            scopes=scopes,
            allowed_origins=allowed_origins,
            rate_limit_per_minute=rate_limit_per_minute,
            token_prefix=prefix,
            token_hash=token_hash(token),
            created_by=actor,
        )
        client.full_clean(exclude=["user"])
        if user_model.objects.filter(username=user.username).exists():
            raise ValidationError({"name": _("この名前のサービスユーザーが既に存在します。")})
        user.save()
        client.user = user
        client.save()
        if not client.is_publishable:
            from django.contrib.auth.models import Group

            user.groups.add(*Group.objects.filter(name=ROLE_STAFF))
            team_member_add(team=team, user=user, role=TeamMembership.Role.MEMBER, actor=actor)
    return client, token


def api_client_update(
    *,
    client: ApiClient,
    actor: User | None = None,
    **changes: Any,
) -> ApiClient:
    """Change description, scopes, allowed origins or rate limit (not the name, team or token)."""
    allowed = {"description", "scopes", "allowed_origins", "rate_limit_per_minute"}
    if set(changes) - allowed:
        raise ValidationError(_("変更できない項目です。"))
    scopes = list(dict.fromkeys(changes.get("scopes", client.scopes)))
    origins = list(changes.get("allowed_origins", client.allowed_origins) or [])
    validate_client_scopes(scopes, origins)
    if (scopes == [ApiScope.COOKIES_WRITE]) != client.is_publishable:
        # The token's kind (pk_/sk_) and the service user's membership follow from it: issue a new client.
        raise ValidationError(
            {
                "scopes": _(
                    "公開キーとサーバー用キーは切り替えられません。新しいクライアントを発行してください。"
                )
            }
        )
    with transaction.atomic(), _acting(actor):
        for name, value in {**changes, "scopes": scopes, "allowed_origins": origins}.items():
            setattr(client, name, value)
        client.full_clean()
        client.save()
    return client


def api_client_rotate(*, client: ApiClient, actor: User | None = None) -> str:
    """Replace the token (the old one stops working at once); returns the new token, shown once."""
    if client.revoked_at is not None:
        raise ValidationError(_("失効したクライアントのトークンは再発行できません。"))
    prefix, token = _new_token(publishable=client.is_publishable)
    with transaction.atomic(), _acting(actor):
        client.token_prefix = prefix
        client.token_hash = token_hash(token)
        client.save(update_fields=["token_prefix", "token_hash"])
    return token


def api_client_revoke(*, client: ApiClient, actor: User | None = None) -> ApiClient:
    """Revoke the token for good and deactivate the service user (its past audit entries stay attributed)."""
    with transaction.atomic(), _acting(actor):
        if client.revoked_at is None:
            client.revoked_at = timezone.now()
            client.save(update_fields=["revoked_at"])
        user = client.user
        if user.is_active:
            user.is_active = False
            user.save(update_fields=["is_active"])
    return client


def api_client_touch(*, client: ApiClient, now: dt.datetime | None = None) -> None:
    """Record use, at most once a minute per client (a conditional UPDATE, no read-modify-write race)."""
    now = now or timezone.now()
    if client.last_used_at is not None and now - client.last_used_at < LAST_USED_RESOLUTION:
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ApiClient.objects.filter(stale, pk=client.pk).update(last_used_at=now)
    client.last_used_at = now


# --- idempotency ------------------------------------------------------------------------------------


class IdempotencyKeyReused(Exception):
    """The same Idempotency-Key came back with a different request."""


def _key_lock_id(client_id: int, key: str) -> int:
    """A signed 64-bit advisory-lock id for (client, key); a collision only serialises two unrelated calls."""
    digest = hashlib.blake2b(f"idem\x1f{client_id}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@functools.cache
def _idempotency_sql() -> str:
    """The stored answer of (client, key): constant SQL, asked on every idempotent API write (crm.rawsql)."""
    cols, table = rawsql.columns(IdempotencyRecord, "r"), IdempotencyRecord._meta.db_table
    return f'SELECT {cols} FROM "{table}" r WHERE r.client_id = %s AND r.key = %s'  # noqa: S608


def idempotent_call(
    *,
    client: ApiClient,
    key: str,
    fingerprint: str,
    compute: Callable[[], tuple[int, dict[str, Any]]],
) -> tuple[int, dict[str, Any], bool]:
    """Run `compute` once per (client, key): returns (status, body, replayed).

    A transaction-scoped advisory lock on (client, key) makes concurrent requests with the same key wait for
    each other, so the second one finds the first one's committed record and replays it instead of racing it
    (to a duplicate, or to a 409 on the external id). `compute` and the record commit together: either both
    exist or neither. Only successful answers are stored; a refused request changed nothing and may be
    corrected and retried with the same key.
    """
    with transaction.atomic():
        # Two statements on purpose: under READ COMMITTED a statement's snapshot is taken when it starts, so a
        # lookup in the same statement as the lock would not see what the holder committed while we waited.
        with rawsql.prepared_cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [_key_lock_id(client.pk, key)])
        existing = _stored_answer(client, key)
        if existing is not None:
            return _replay(existing, fingerprint)
        status, body = compute()
        _answer_record(client, key, fingerprint, status, body).save(force_insert=True)
    return status, body, False


def _answer_record(
    client: ApiClient, key: str, fingerprint: str, status: int, body: dict[str, Any]
) -> IdempotencyRecord:
    return IdempotencyRecord(
        client=client,
        key=key,
        fingerprint=fingerprint,
        response_status=status,
        response_body=json.dumps(body, ensure_ascii=False, default=str),
        expires_at=IdempotencyRecord.default_expiry(),
    )


# What a single-statement write gets to store its answer with (idempotent_single_statement).
AnswerRecord = Callable[[int, dict[str, Any]], tuple[str, list[Any]]]
_KEY_CONSTRAINT = IdempotencyRecord._meta.constraints[0].name  # (client, key) unique


def _stored_answer(client: ApiClient, key: str) -> IdempotencyRecord | None:
    """The live record of (client, key); an expired one is deleted and counts as none."""
    row = rawsql.fetch_one(_idempotency_sql(), [client.pk, key])
    existing = rawsql.load(IdempotencyRecord, row) if row else None
    if existing is not None and existing.expired:
        existing.delete()
        return None
    return existing


def _replay(existing: IdempotencyRecord, fingerprint: str) -> tuple[int, dict[str, Any], bool]:
    if existing.fingerprint != fingerprint:
        raise IdempotencyKeyReused
    return existing.response_status, json.loads(existing.response_body), True


def idempotent_single_statement(
    *,
    client: ApiClient,
    key: str,
    fingerprint: str,
    compute: Callable[[AnswerRecord], tuple[int, dict[str, Any]]],
) -> tuple[int, dict[str, Any], bool]:
    """idempotent_call for a write of one statement, without a transaction or a lock.

    `compute(record)` must write with one statement and put `record(status, body)` (the INSERT of the answer
    it is about to give) into it. The answer and the write then exist together or not at all. Of two
    requests with the same key running at once, both find no answer, both write; PostgreSQL makes the
    second statement wait for the first and then refuses it on the key's unique constraint, whole: it
    wrote nothing, and it replays the first one's answer. One round trip before the write instead of a
    transaction, an advisory lock and a lookup (the consent API's path).
    """
    existing = _stored_answer(client, key)
    if existing is not None:
        return _replay(existing, fingerprint)

    def record(status: int, body: dict[str, Any]) -> tuple[str, list[Any]]:
        return _answer_record(client, key, fingerprint, status, body).insert_statement()

    try:
        # Inside a caller's transaction (tests, nested use) a refused statement must not abort it.
        if transaction.get_connection().in_atomic_block:
            with transaction.atomic():
                status, body = compute(record)
        else:
            status, body = compute(record)
    except IntegrityError as exc:
        if getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) != _KEY_CONSTRAINT:
            raise
        existing = _stored_answer(client, key)
        if existing is None:  # the winner's answer expired in between: not worth a second attempt
            raise
        return _replay(existing, fingerprint)
    return status, body, False


def idempotency_purge_expired(*, now: dt.datetime | None = None, batch: int = 2000) -> int:
    """Delete expired idempotency records in batches (safe to run twice). Returns how many were deleted."""
    now = now or timezone.now()
    total = 0
    while True:
        ids = list(IdempotencyRecord.objects.filter(expires_at__lte=now).values_list("pk", flat=True)[:batch])
        if not ids:
            return total
        total += IdempotencyRecord.objects.filter(pk__in=ids).delete()[0]
