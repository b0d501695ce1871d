"""Writes of the sign-in area: audit entries of every attempt, ended sessions, second-factor devices.

Every entry goes to the hash-chained audit trail (crm.AuditEntry) as an access entry on the account (the
user's id, never a name as typed: see crm.signin.identity). The request's address comes from the audit
context of the request (AuditlogMiddleware), as for every other entry.
"""

from __future__ import annotations

import logging
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.db import transaction
from django.utils import timezone, translation

from crm.audit.actors import audit_actor
from crm.models import AuditEntry
from crm.signin.identity import UNKNOWN_PREFIX, account_for, typed_username_hash

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.http import HttpRequest

log = logging.getLogger(__name__)

# event → what the entry says (Japanese: the audit trail's language, as the rest of its text)
EVENTS = {
    "failed": "サインイン失敗",
    "succeeded": "サインイン成功",
    "signed_out": "サインアウト",
    "idle_timeout": "無操作によるサインアウト",
    "second_factor_verified": "二要素認証 成功",
    "second_factor_failed": "二要素認証 失敗",
    "second_factor_enrolled": "二要素認証 登録",
    "second_factor_reset": "二要素認証 リセット",
    "lockout_cleared": "サインインのロック解除",
    "sessions_ended": "セッション終了",
}
RECOVERY_CODES = 10


def _record(
    *, event: str, user_id: int | None, actor: User | None, details: dict[str, Any] | None = None
) -> None:
    from django.contrib.contenttypes.models import ContentType

    with translation.override("ja"), audit_actor(actor):
        AuditEntry.objects.create(
            content_type=ContentType.objects.get_for_model(get_user_model()),
            object_pk=str(user_id) if user_id is not None else "unknown",
            object_id=user_id,
            object_repr=EVENTS[event],
            action=AuditEntry.Action.ACCESS,
            actor=actor,
            additional_data={"signin": {"event": event, **(details or {})}},
        )


def signin_failed_record(*, request: HttpRequest | None, typed: str | None) -> None:
    """A refused sign-in (wrong password, unknown name, or refused by the lockout): the account's id when
    the name is an account's, else a keyed hash of the name; whether the lockout is (now) in force."""
    account = account_for(typed)
    details: dict[str, Any] = {"locked_out": bool(getattr(request, "axes_locked_out", False))}
    if account is None:
        details["username_hash"] = typed_username_hash(typed or "")
    _record(event="failed", user_id=account.pk if account else None, actor=None, details=details)


def signin_succeeded_record(*, user: User) -> None:
    """A sign-in whose password was accepted (the second factor, when required, is recorded after it)."""
    _record(event="succeeded", user_id=user.pk, actor=user)


def signin_signed_out_record(*, user: User, idle: bool = False) -> None:
    """A sign-out, by the user or by the idle timeout."""
    _record(event="idle_timeout" if idle else "signed_out", user_id=user.pk, actor=user)


def user_sessions_end(*, user_id: int, reason: str, actor: User | None = None) -> None:
    """End every session of the user (the next request of each finds no login), after the current
    transaction commits (at once outside one).

    Django's sessions hold the user id inside their (signed) data, so the live sessions are read one by one:
    a role is removed rarely, and an internal CRM has a few hundred live sessions at most."""

    def end() -> None:
        from django.contrib.sessions.models import Session

        ended = 0
        store = import_module(settings.SESSION_ENGINE).SessionStore
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
            if session.get_decoded().get(SESSION_KEY) == str(user_id):
                store(session_key=session.session_key).delete()  # database row and cached copy
                ended += 1
        if ended:
            _record(
                event="sessions_ended",
                user_id=user_id,
                actor=actor,
                details={"reason": reason, "count": ended},
            )

    transaction.on_commit(end)


def signin_lockout_clear(*, attempts: Any, actor: User) -> int:
    """Remove lockout records (django-axes AccessAttempt rows) by the security role: each account named is
    recorded by id (or by the keyed hash of a name that is no account), with the address locked from."""
    count = 0
    with transaction.atomic():
        for attempt in attempts.select_for_update():
            name = attempt.username or ""
            account = None if name.startswith(UNKNOWN_PREFIX) else account_for(name)
            details: dict[str, Any] = {
                "ip_address": attempt.ip_address,
                "failures": attempt.failures_since_start,
            }
            if account is None and name:
                details["username_hash"] = name.removeprefix(UNKNOWN_PREFIX)
            _record(
                event="lockout_cleared", user_id=account.pk if account else None, actor=actor, details=details
            )
            attempt.delete()
            count += 1
    return count


# --- second factor ------------------------------------------------------------------------------------------


def second_factor_verified_record(*, user: User, device: Any) -> None:
    _record(
        event="second_factor_verified", user_id=user.pk, actor=user, details={"device": type(device).__name__}
    )


def second_factor_failed_record(*, user: User) -> None:
    _record(event="second_factor_failed", user_id=user.pk, actor=None)


def second_factor_enrol_start(*, user: User) -> Any:
    """The user's unconfirmed TOTP device (created once, kept until confirmed): its key is shown to the user
    as a QR code to scan; nothing counts until a code from it is confirmed."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    with transaction.atomic():
        device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
        if device is None:
            device = TOTPDevice.objects.create(user=user, name="TOTP", confirmed=False)
    return device


def second_factor_enrol_confirm(*, user: User, device: Any, token: str) -> list[str] | None:
    """Confirm the TOTP device with a code from it; on success also issue the recovery codes (returned once,
    to be shown once) and record the enrolment. None when the code is wrong (nothing changes)."""
    from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

    with transaction.atomic():
        if device.user_id != user.pk or device.confirmed or not device.verify_token(token):
            return None
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        StaticDevice.objects.filter(user=user).delete()
        static = StaticDevice.objects.create(user=user, name="recovery", confirmed=True)
        codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
        StaticToken.objects.bulk_create([StaticToken(device=static, token=code) for code in codes])
        _record(
            event="second_factor_enrolled",
            user_id=user.pk,
            actor=user,
            details={"recovery_codes": len(codes)},
        )
    return codes


def second_factor_reset(*, user: User, actor: User) -> int:
    """Remove every second-factor device of `user` (lost phone): the next sign-in enrols anew. Done by the
    security role; the user's sessions end, and the reset is recorded. Returns the devices removed."""
    from django_otp import devices_for_user

    with transaction.atomic():
        devices = list(devices_for_user(user, confirmed=None))
        for device in devices:
            device.delete()
        _record(event="second_factor_reset", user_id=user.pk, actor=actor, details={"devices": len(devices)})
        user_sessions_end(user_id=user.pk, reason="second_factor_reset", actor=actor)
    return len(devices)
