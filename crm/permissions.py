"""Who may see and change which customers: roles (groups) and team object permissions.

The one gate is `Customer.objects.restrict(user, action)` (crm.models.CustomerQuerySet), which calls
`customer_scope` below. Admin querysets, selectors, exports, API handlers and tasks acting for a user all go
through it. A model-level permission alone never opens every row (guardian's accept_global_perms is off):
rows come from team object permissions, or from an explicit "all customers" permission.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet
from guardian.shortcuts import get_objects_for_user

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    from crm.models import CustomerQuerySet, Team

ACTIONS = ("view", "change", "delete")

# Role groups, created by migration crm/0002_roles. name → (Japanese label, model permissions).
ROLE_STAFF = "staff"
ROLE_SUPPORT = "support_desk"
ROLE_PRIVACY = "privacy_officer"
ROLE_SECURITY = "security"
ROLE_AUDITOR = "auditor"

ROLE_LABELS = {
    ROLE_STAFF: "営業・CS",
    ROLE_SUPPORT: "開示等請求対応",
    ROLE_PRIVACY: "個人情報保護管理者",
    ROLE_SECURITY: "セキュリティ",
    ROLE_AUDITOR: "監査",
}

ROLE_PERMISSIONS: dict[str, list[str]] = {
    # Sees and changes only their teams' customers (team object permissions decide which), masked.
    ROLE_STAFF: ["crm.view_customer", "crm.change_customer", "crm.add_customer", "crm.view_team"],
    # Answers 開示等請求 for anyone: must find every customer and see clear values.
    ROLE_SUPPORT: [
        "crm.view_customer",
        "crm.view_all_customers",
        "crm.view_customer_pii",
        "crm.view_team",
    ],
    # 個人情報保護管理者: sees all, manages teams and memberships, reads the audit trail.
    ROLE_PRIVACY: [
        "crm.view_customer",
        "crm.view_all_customers",
        "crm.view_customer_pii",
        "crm.view_team",
        "crm.add_team",
        "crm.change_team",
        "crm.view_teammembership",
        "crm.add_teammembership",
        "crm.change_teammembership",
        "crm.delete_teammembership",
        "crm.view_auditentry",
    ],
    # Reads the audit and access logs; no customer data.
    ROLE_SECURITY: ["crm.view_auditentry"],
    # Read-only logs.
    ROLE_AUDITOR: ["crm.view_auditentry"],
}

TEAM_PERMS = {
    "view": "crm.view_team_customers",
    "change": "crm.change_team_customers",
    "delete": "crm.delete_team_customers",
}
# The role's model permission each action needs before any team permission counts. Erasing needs the
# right to change customers: no role holds crm.delete_customer (the admin delete view is never used, erasure
# is a service), and a team lead's delete permission must not open erasure to a role that cannot even view.
MODEL_PERMS = {"view": "crm.view_customer", "change": "crm.change_customer", "delete": "crm.change_customer"}
ALL_PERMS = {"view": "crm.view_all_customers", "change": "crm.change_all_customers", "delete": None}


def teams_for(user: AbstractBaseUser | AnonymousUser, action: str = "view") -> QuerySet[Team]:
    """Teams on which `user` holds the object permission for `action` (directly or through a group)."""
    from crm.models import Team

    return get_objects_for_user(
        user, TEAM_PERMS[action], klass=Team.objects.all(), accept_global_perms=False, with_superuser=False
    )


def customer_scope(
    qs: CustomerQuerySet, user: AbstractBaseUser | AnonymousUser, action: str
) -> CustomerQuerySet:
    if action not in ACTIONS:
        raise ValueError(f"Unknown action {action!r}; expected one of {ACTIONS}.")
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return qs.none()
    if user.is_superuser:
        return qs
    # Every action needs the model permission of the user's role first (a right the role does not grant
    # is never opened by a team permission).
    if not user.has_perm(MODEL_PERMS[action]):
        return qs.none()
    all_perm = ALL_PERMS[action]
    if all_perm and user.has_perm(all_perm):
        return qs
    return qs.filter(team__in=teams_for(user, action).values("pk"))


def can_view_pii(user: AbstractBaseUser | AnonymousUser) -> bool:
    """The explicit 'view personal data' permission: without it, personal values are masked."""
    return bool(getattr(user, "is_authenticated", False) and user.has_perm("crm.view_customer_pii"))
