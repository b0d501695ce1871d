"""Signal receivers of the sign-in area (connected in crm.apps.CrmConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model

from crm.signin import services
from crm.signin.identity import typed_username


def on_login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    # Runs after django-axes' own receiver (axes is installed before crm), which has marked the request
    # when this failure put (or found) the lockout in force.
    services.signin_failed_record(request=request, typed=typed_username(request, credentials))


def on_logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    services.signin_succeeded_record(user=user)


def on_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        services.signin_signed_out_record(user=user, idle=bool(getattr(request, "crm_idle_timeout", False)))


_ROLE_FLAGS = ("is_superuser", "is_staff", "is_active")


def on_user_pre_save(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    """A user losing superuser, staff or active status loses every session (after the commit)."""
    if instance.pk is None or (update_fields is not None and not set(update_fields) & set(_ROLE_FLAGS)):
        return
    before = sender.objects.filter(pk=instance.pk).values(*_ROLE_FLAGS).first()
    if before is None:
        return
    lost = [flag for flag in _ROLE_FLAGS if before[flag] and not getattr(instance, flag)]
    if lost:
        services.user_sessions_end(user_id=instance.pk, reason="lost:" + ",".join(lost))


def on_roles_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    """A role (group) or a permission removed from a user ends every session of that user."""
    user_model = get_user_model()
    if action == "post_remove":
        user_ids = list(pk_set or ()) if reverse else [instance.pk]
    elif action == "pre_clear":
        if reverse:  # a group or permission cleared of all its users
            field = "groups" if sender is user_model.groups.through else "user_permissions"
            user_ids = list(user_model.objects.filter(**{field: instance}).values_list("pk", flat=True))
        else:
            user_ids = [instance.pk]
    else:
        return
    reason = "role_removed" if sender is user_model.groups.through else "permission_removed"
    for user_id in user_ids:
        services.user_sessions_end(user_id=user_id, reason=reason)


def connect() -> None:
    from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
    from django.db.models.signals import m2m_changed, pre_save

    user_model = get_user_model()
    user_login_failed.connect(on_login_failed, dispatch_uid="crm.signin.failed")
    user_logged_in.connect(on_logged_in, dispatch_uid="crm.signin.succeeded")
    user_logged_out.connect(on_logged_out, dispatch_uid="crm.signin.signed_out")
    pre_save.connect(on_user_pre_save, sender=user_model, dispatch_uid="crm.signin.user_flags")
    for through in (user_model.groups.through, user_model.user_permissions.through):
        m2m_changed.connect(
            on_roles_changed, sender=through, dispatch_uid=f"crm.signin.roles.{through.__name__}"
        )
