"""Who may see and change which customers: roles (groups) and team object permissions.

The one gate is `Customer.objects.restrict(user, action)` (crm.models.CustomerQuerySet), which calls
`customer_scope` below. Admin querysets, selectors, exports, API handlers and tasks acting for a user all go
through it. A model-level permission alone never opens every row (guardian's accept_global_perms is off):
rows come from team object permissions, or from an explicit "all customers" permission.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import QuerySet

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
    # Erasure only where a team lead holds the team's delete permission.
    ROLE_STAFF: [
        "crm.view_customer",
        "crm.change_customer",
        "crm.add_customer",
        "crm.erase_customer",
        "crm.view_team",
    ],
    # Answers 開示等請求 for anyone: must find every customer and see clear values, and carries out erasure
    # and stop-use (利用停止・消去, APPI Art. 35; GDPR Art. 17) for anyone. Changes no customer by hand.
    ROLE_SUPPORT: [
        "crm.view_customer",
        "crm.view_all_customers",
        "crm.view_customer_pii",
        "crm.erase_customer",
        "crm.erase_all_customers",
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
    # Reads the audit and access logs; no customer data. Unlocks sign-in lockouts and resets a user's second
    # factor (crm.signin.admin).
    ROLE_SECURITY: [
        "crm.view_auditentry",
        "axes.view_accessattempt",
        "axes.delete_accessattempt",
        "otp_totp.view_totpdevice",
        "otp_totp.delete_totpdevice",
    ],
    # Read-only logs.
    ROLE_AUDITOR: ["crm.view_auditentry"],
}

TEAM_PERMS = {
    "view": "crm.view_team_customers",
    "change": "crm.change_team_customers",
    "delete": "crm.delete_team_customers",
}
# The role's model permission each action needs before any team permission counts. Erasing ("delete") needs
# crm.erase_customer: no role holds crm.delete_customer (the admin delete view is never used, erasure is a
# service, crm.retention.services), and a team lead's delete permission must not open erasure to a role
# without it. crm.erase_all_customers opens every team's customers to the request desk.
MODEL_PERMS = {"view": "crm.view_customer", "change": "crm.change_customer", "delete": "crm.erase_customer"}
ALL_PERMS = {
    "view": "crm.view_all_customers",
    "change": "crm.change_all_customers",
    "delete": "crm.erase_all_customers",
}


def team_ids_for(user: AbstractBaseUser | AnonymousUser, action: str = "view") -> list[int]:
    """Ids of the teams on which `user` holds the team permission for `action`, directly or through a group.

    One small SQL statement over guardian's direct-FK tables (TeamUserObjectPermission /
    TeamGroupObjectPermission), the one that preloads a request's team ids (team_ids_select): building the
    same query through the ORM on every call cost more than running it.
    Handing the planner literal ids (`team_id IN (1, 3)`) instead of guardian's generic subquery lets it use
    the (team, id) index and its statistics at a million customers, and costs a fraction of the Python
    that get_objects_for_user spends building its query on every request.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return []
    # Loaded with the user in the same statement (crm.integrations.selectors: the API's service users).
    preloaded = getattr(user, PRELOADED_TEAM_IDS, None)
    if preloaded is not None:
        return list(preloaded[action])
    permission_id = _permission_id(TEAM_PERMS[action])
    if permission_id is None:
        return []
    with connection.cursor() as cur:
        cur.execute(f"SELECT {team_ids_select('%s')}", [user.pk, user.pk])
        pairs = cur.fetchone()[0] or ()
    return sorted({team_id for perm, team_id in pairs if perm == permission_id})


_permission_ids: dict[str, int | None] = {}


def _permission_id(perm: str) -> int | None:
    """The auth_permission id of "app_label.codename", per process (rows made by migrate; flush and migrate
    re-create them with new ids, so post_migrate clears this, see crm.apps)."""
    if perm not in _permission_ids:
        from django.contrib.auth.models import Permission

        app_label, codename = perm.split(".", 1)
        found = Permission.objects.filter(content_type__app_label=app_label, codename=codename)
        pk = found.values_list("pk", flat=True).first()
        if pk is None:
            return None  # not created yet (mid-migration): nobody holds it; nothing cached
        _permission_ids[perm] = pk
    return _permission_ids[perm]


def forget_permission_ids(**_kwargs: object) -> None:
    _permission_ids.clear()


# Attribute of a user object loaded together with its team ids ({action: [team ids]}), for that object's
# lifetime only (one request): see team_ids_select, preload_team_ids and preload_request_team_ids.
PRELOADED_TEAM_IDS = "_crm_team_ids"


def team_ids_select(user_id_column: str) -> str:
    """One SQL select-list item: for the user whose id is in `user_id_column`, every (permission id, team
    id) pair of the team permissions of ACTIONS, as a two-dimensional array (read by preload_team_ids).
    What team_ids_for answers for each action, in the same statement as the user."""
    ids = ", ".join(str(_permission_id(TEAM_PERMS[action]) or 0) for action in ACTIONS)
    direct, via_group, user_groups = _permission_tables()
    return (
        f"ARRAY(SELECT ARRAY[p.permission_id, p.content_object_id] FROM {direct} p"  # noqa: S608
        f" WHERE p.user_id = {user_id_column} AND p.permission_id IN ({ids})"
        f" UNION SELECT ARRAY[g.permission_id, g.content_object_id] FROM {via_group} g"
        f" JOIN {user_groups} ug ON ug.group_id = g.group_id"
        f" WHERE ug.user_id = {user_id_column} AND g.permission_id IN ({ids}))"
    )


def preload_team_ids(user: AbstractBaseUser, pairs: Sequence[Sequence[int]]) -> None:
    """Keep on `user` (this object only) the team ids of each action from team_ids_select's pairs."""
    by_permission: dict[int, set[int]] = {}
    for permission_id, team_id in pairs or ():
        by_permission.setdefault(permission_id, set()).add(team_id)
    preloaded = {}
    for action in ACTIONS:
        permission_id = _permission_id(TEAM_PERMS[action])
        preloaded[action] = sorted(by_permission.get(permission_id, ())) if permission_id else []
    setattr(user, PRELOADED_TEAM_IDS, preloaded)


def preload_request_team_ids(user: AbstractBaseUser | AnonymousUser) -> None:
    """Load the team ids of every action for this request's user in one statement (admin pages ask the gate
    several times per request: the list, its team filter, the add button). Only on a per-request user
    object: it keeps the ids for its lifetime."""
    if not getattr(user, "is_authenticated", False) or hasattr(user, PRELOADED_TEAM_IDS):
        return
    if user.is_superuser or user.has_perm(ALL_PERMS["view"]):
        return  # sees every team's customers: the gate never asks for team ids when viewing
    with connection.cursor() as cur:
        cur.execute(f"SELECT {team_ids_select(str(int(user.pk)))}")
        preload_team_ids(user, cur.fetchone()[0])


def _permission_tables() -> tuple[str, str, str]:
    """guardian's direct-FK tables of team permissions (user, group) and the user↔group table."""
    from django.contrib.auth import get_user_model

    from crm.models import TeamGroupObjectPermission, TeamUserObjectPermission

    return (
        TeamUserObjectPermission._meta.db_table,
        TeamGroupObjectPermission._meta.db_table,
        get_user_model().groups.through._meta.db_table,
    )


def teams_for(user: AbstractBaseUser | AnonymousUser, action: str = "view") -> QuerySet[Team]:
    """Teams on which `user` holds the object permission for `action` (directly or through a group)."""
    from crm.models import Team

    return Team.objects.filter(pk__in=team_ids_for(user, action))


ALL = "all"


def team_scope(user: AbstractBaseUser | AnonymousUser, action: str) -> list[int] | str:
    """Which customers `user` may `action`: ALL, or the ids of the teams whose customers (empty: none).

    The policy of the one gate, restrict(): customer_scope turns it into a queryset filter, and the few
    constant-SQL lookups of the API hot path (crm.selectors.customer_ref) into a `team_id = ANY(...)`.
    """
    if action not in ACTIONS:
        raise ValueError(f"Unknown action {action!r}; expected one of {ACTIONS}.")
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return []
    if user.is_superuser:
        return ALL
    # Every action needs the model permission of the user's role first (a right the role does not grant
    # is never opened by a team permission).
    if not user.has_perm(MODEL_PERMS[action]):
        return []
    all_perm = ALL_PERMS[action]
    if all_perm and user.has_perm(all_perm):
        return ALL
    return team_ids_for(user, action)


def customer_scope(
    qs: CustomerQuerySet, user: AbstractBaseUser | AnonymousUser, action: str
) -> CustomerQuerySet:
    scope = team_scope(user, action)
    if scope == ALL:
        return qs
    return qs.filter(team_id__in=scope) if scope else qs.none()


def can_view_pii(user: AbstractBaseUser | AnonymousUser) -> bool:
    """The explicit 'view personal data' permission: without it, personal values are masked."""
    return bool(getattr(user, "is_authenticated", False) and user.has_perm("crm.view_customer_pii"))
