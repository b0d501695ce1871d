"""Admin pages of the sign-in area, for the security role: lockouts (django-axes) and second-factor devices
(django-otp). Removing either goes through crm.signin.services, which records it in the audit trail.

Registered at app loading (crm.apps), after django-axes and django-otp have registered theirs (Django's
autodiscover, in the admin app's ready(), runs before crm's).
"""

from __future__ import annotations

from typing import Any

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from crm.audit.actors import request_user
from crm.signin import services

# django-otp's own admins show the TOTP keys and the recovery codes and let a device be added for anyone.
for _model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


@admin.register(AccessAttempt)
class LockoutAdmin(AccessAttemptAdmin):
    """django-axes' list of sign-in failures; deleting rows (the bulk action) unlocks, through the service."""

    actions = ["delete_selected"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("状態"))
    def status(self, obj: AccessAttempt) -> Any:
        return super().status(obj)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.signin_lockout_clear(
            attempts=AccessAttempt.objects.filter(pk=obj.pk), actor=request_user(request)
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        services.signin_lockout_clear(attempts=queryset, actor=request_user(request))


class ConfirmedFilter(admin.SimpleListFilter):
    """django-otp's `confirmed` field has an English label only; the filter carries its own."""

    title = _("登録完了")
    parameter_name = "confirmed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("1", _("はい")), ("0", _("いいえ"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(confirmed=value == "1") if value in ("0", "1") else queryset


@admin.register(TOTPDevice)
class SecondFactorAdmin(admin.ModelAdmin):
    """Who has enrolled a second factor; the reset action removes a user's devices (lost phone), ends the
    user's sessions and is recorded. Keys are never shown. django-otp marks none of its field labels for
    translation, so the columns are this admin's own, labelled in both languages."""

    list_display: tuple[str, ...] = (
        "device_user",
        "device_confirmed",
        "device_created_at",
        "device_last_used_at",
    )
    list_filter = [ConfirmedFilter]
    search_fields = ["user__username"]
    fields = readonly_fields = list_display
    actions = ["reset_second_factor"]

    @admin.display(description=_("ユーザー"), ordering="user__username")
    def device_user(self, obj: TOTPDevice) -> Any:
        return obj.user

    @admin.display(description=_("登録完了"), boolean=True)
    def device_confirmed(self, obj: TOTPDevice) -> bool:
        return bool(obj.confirmed)

    @admin.display(description=_("登録日時"), ordering="created_at")
    def device_created_at(self, obj: TOTPDevice) -> Any:
        return obj.created_at

    @admin.display(description=_("最終使用日時"), ordering="last_used_at")
    def device_last_used_at(self, obj: TOTPDevice) -> Any:
        return obj.last_used_at

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # removal only through the reset (sessions ended, audited)
        return actions

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.second_factor_reset(user=obj.user, actor=request_user(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for user in {device.user for device in queryset.select_related("user")}:
            services.second_factor_reset(user=user, actor=request_user(request))

    @admin.action(description=_("二要素認証をリセット（次回ログイン時に再登録）"), permissions=["delete"])
    def reset_second_factor(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        users = {device.user for device in queryset.select_related("user")}
        for user in users:
            services.second_factor_reset(user=user, actor=request_user(request))
        self.message_user(
            request,
            ngettext(
                "%(count)d人の二要素認証をリセットしました。",
                "%(count)d人の二要素認証をリセットしました。",
                len(users),
            )
            % {"count": len(users)},
            messages.SUCCESS,
        )
