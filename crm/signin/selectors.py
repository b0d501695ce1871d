"""Reads of the sign-in area: who must give a second factor."""

from __future__ import annotations

from typing import Any

from crm.permissions import can_view_pii, teams_open_to


def second_factor_required(user: Any) -> bool:
    """Whoever sees personal data in clear or can erase customers: superusers, holders of the 'view personal
    data' permission (support desk, privacy officer, team leads granted it), and anyone the gate lets erase
    (team leads, the support desk). The rule reads the permissions the gate reads, so a role that gains one
    of these rights needs the second factor from its next request on."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_superuser or can_view_pii(user) or teams_open_to(user, "delete").exists())


def second_factor_enrolled(user: Any) -> bool:
    """The user has a confirmed TOTP device (recovery codes alone do not count as enrolled)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()
