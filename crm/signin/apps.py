"""App configurations of django-otp's TOTP plugin and django-axes with translatable names: theirs have none,
so the admin index showed "Otp_Totp" and "Axes" in both languages."""

from __future__ import annotations

from axes.apps import AppConfig as AxesConfig
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_totp.apps import DefaultConfig


class SecondFactorTotpConfig(DefaultConfig):
    verbose_name = _("二要素認証（TOTP）")


class SigninLockoutConfig(AxesConfig):
    """django-axes, with a translatable name (its configuration has none: "Axes" in both languages)."""

    verbose_name = _("ログイン試行の制限")
