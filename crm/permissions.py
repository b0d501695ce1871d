"""The one permission gate: who may see and change which rows holding personal data.

Every model that holds or points to personal data has `Model.objects.restrict(user, action)` on its default
manager, from `RestrictedQuerySet` below (NetBox's pattern: netbox/utilities/querysets.py). The rule is
written once, here, in the ORM: a customer is reachable through team object permissions (django-guardian's
direct-FK tables, granted on teams, never per customer) or an explicit "all customers" permission, and only
after the role's model permission; every other row is reachable when its customer (or its team) is.
Admin querysets, API handlers, selectors, exports and commands acting for a user all go through it. A
model-level permission alone never opens every row (guardian's accept_global_perms is never used).

This is the only module that reads guardian's permission tables (tests/test_permission_matrix.py fails
when another one does), and it reads them through the ORM only: no hand-written SQL. The team ids an
admin page hands the planner as literals are that same query's answer for the request (remember_team_ids),
never a second spelling of the rule; elsewhere the rule runs as a subquery inside the statement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeGuard, TypeVar, cast

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import Q, QuerySet

if TYPE_CHECKING:
    from django.contrib.auth import models as auth_models

    from crm.models import Team

    User = auth_models.User | auth_models.AnonymousUser

M = TypeVar("M", bound=models.Model)

ACTIONS = ("view", "change", "delete")

# Role groups, created by migration crm/0002_roles. name → (Japanese label, model permissions).
ROLE_STAFF = "staff"
ROLE_SUPPORT = "support_desk"
ROLE_SUPPORT_LEAD = "support_lead"
ROLE_PRIVACY = "privacy_officer"
ROLE_SECURITY = "security"
ROLE_AUDITOR = "auditor"

ROLE_LABELS = {
    ROLE_STAFF: "営業・CS",
    ROLE_SUPPORT: "開示等請求対応",
    ROLE_SUPPORT_LEAD: "開示等請求責任者",
    ROLE_PRIVACY: "個人情報保護管理者",
    ROLE_SECURITY: "セキュリティ",
    ROLE_AUDITOR: "監査",
}

# The request desk (開示等請求対応 and its lead) answers 開示等請求 for anyone: must find every customer and
# see clear values, and carries out erasure and stop-use (利用停止・消去, APPI Art. 35; GDPR Art. 17) for
# anyone. Changes no customer by hand.
_REQUEST_DESK_PERMISSIONS = (
    "crm.view_customer",
    "crm.view_all_customers",
    "crm.view_customer_pii",
    "crm.erase_customer",
    "crm.erase_all_customers",
    "crm.view_team",
)

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
    ROLE_SUPPORT: [*_REQUEST_DESK_PERMISSIONS],
    # 開示等請求責任者 (support lead): the support desk's rights, plus (consent.roles) every request of the
    # desk and the second pair of eyes on an erasure. A list of its own: other apps add to each role's.
    ROLE_SUPPORT_LEAD: [*_REQUEST_DESK_PERMISSIONS],
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
        # The membership form's user lookup (raw_id_fields) lists staff accounts: without it the privacy
        # officer, who manages memberships, could only type a user's id.
        "auth.view_user",
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


ALL = "all"


def _crm_model(name: str) -> Any:
    """A model of crm by name from Django's app registry: crm.models builds its querysets on this module, so
    this module names the models (as a ForeignKey("crm.Team") does) instead of importing them back."""
    return apps.get_model("crm", name)


def _team_model() -> type[Team]:
    return cast("type[Team]", _crm_model("Team"))


def _check_action(action: str) -> None:
    if action not in ACTIONS:
        raise ValueError(f"Unknown action {action!r}; expected one of {ACTIONS}.")


def _active(user: User) -> TypeGuard[auth_models.User]:
    """A signed-in, active user (to mypy: not the AnonymousUser)."""
    return bool(getattr(user, "is_authenticated", False) and user.is_active)


def _team_permissions(
    user: auth_models.User, actions: tuple[str, ...]
) -> tuple[QuerySet[Any], QuerySet[Any]]:
    """guardian's rows granting `user` the team permissions of `actions`: directly, and through a group.

    The groups are the user's memberships (auth_user_groups alone, no join of auth_group): a join fewer in a
    subquery every API write carries. The permissions stay named by app label and codename, constants of
    the statement: crm.selectors compiles the API's lookup once per process, and a content type's id is a
    row's id, not a constant (a flushed test database numbers them anew)."""
    codenames = [TEAM_PERMS[action].split(".", 1)[1] for action in actions]
    perm = {"permission__codename__in": codenames, "permission__content_type__app_label": "crm"}
    direct = _crm_model("TeamUserObjectPermission").objects.filter(user_id=user.pk, **perm)
    memberships = get_user_model().groups.through.objects.filter(user_id=user.pk).values("group_id")
    via_group = _crm_model("TeamGroupObjectPermission").objects.filter(group_id__in=memberships, **perm)
    return direct, via_group


# Attribute of a user object holding its team ids per action, read once for the request it serves
# (remember_team_ids). Like Django's own permission cache on the user object, it lives as long as that object.
REMEMBERED_TEAM_IDS = "_crm_team_ids"


def remember_team_ids(user: User) -> None:
    """Read the user's team ids of every action in one statement and keep them on this user object.

    For a request's user (the admin asks the gate several times per page: the list, its team filter, the
    add button): restrict() then hands the planner literal ids (`team_id IN (1, 3)`), which lets it use the
    (team, id) index and its statistics at a million customers. The ids come from the same ORM query as
    the gate's subquery (_team_permissions), evaluated early: not a copy of the rule. Without it (the
    integration API, tasks) the gate is a subquery inside the statement that reads the rows.
    """
    if not _active(user) or hasattr(user, REMEMBERED_TEAM_IDS):
        return
    if user.is_superuser or user.has_perm(ALL_PERMS["view"]):
        return  # sees every team's customers: viewing never asks for team ids
    direct, via_group = _team_permissions(user, ACTIONS)
    fields = ("permission__codename", "content_object_id")
    rows = direct.values_list(*fields).union(via_group.values_list(*fields))
    by_codename: dict[str, set[int]] = {}
    for codename, team_id in rows:
        by_codename.setdefault(codename, set()).add(team_id)
    remembered = {a: sorted(by_codename.get(TEAM_PERMS[a].split(".", 1)[1], ())) for a in ACTIONS}
    setattr(user, REMEMBERED_TEAM_IDS, remembered)


def teams_for(user: User, action: str = "view") -> QuerySet[Team]:
    """Teams on which `user` holds the team object permission for `action`, directly or through a group.

    A lazy queryset over guardian's direct-FK tables (TeamUserObjectPermission, TeamGroupObjectPermission):
    used as a subquery, PostgreSQL answers it from the small permission tables inside the one statement
    that reads the rows. On a user object whose ids were read for its request (remember_team_ids), the
    ids themselves.
    """
    teams = _team_model().objects
    _check_action(action)
    if not _active(user):
        return teams.none()
    remembered = getattr(user, REMEMBERED_TEAM_IDS, None)
    if remembered is not None:
        return teams.filter(pk__in=remembered[action])
    direct, via_group = _team_permissions(user, (action,))
    return teams.filter(
        Q(pk__in=direct.values("content_object_id")) | Q(pk__in=via_group.values("content_object_id"))
    )


def team_ids_filter(user: User, action: str) -> list[int] | QuerySet[Any]:
    """What `team_id IN (…)` compares with for `user`'s teams of `action`: the remembered ids as literals,
    else the subquery of teams_for."""
    remembered = getattr(user, REMEMBERED_TEAM_IDS, None)
    if remembered is not None:
        return list(remembered[action])
    return teams_for(user, action).values("pk")


TEAMS = "teams"


def scope_kind(user: User, action: str) -> str | None:
    """Whose customers `user` may `action`: ALL, TEAMS (those of their teams' object permissions) or None.

    The policy of the gate. Every action needs the model permission of the user's role first (a right the
    role does not grant is never opened by a team permission), then either the "all customers" permission
    of the action or the team object permissions.
    """
    _check_action(action)
    if not _active(user):
        return None
    if user.is_superuser:
        return ALL
    if not user.has_perm(MODEL_PERMS[action]):
        return None
    if user.has_perm(ALL_PERMS[action]):
        return ALL
    return TEAMS


def teams_open_to(user: User, action: str) -> QuerySet[Team]:
    """The teams whose customers `user` may `action` (every team, with the action's "all customers"
    permission): the team choices of a form, the teams a user may create customers in ("change")."""
    teams = _team_model().objects
    kind = scope_kind(user, action)
    if kind is None:
        return teams.none()
    return teams.all() if kind == ALL else teams_for(user, action)


def team_open_to(user: User, action: str, team_id: int) -> bool:
    """Whether `user` may `action` the customers of team `team_id` (may create one there, for "change")."""
    return teams_open_to(user, action).filter(pk=team_id).exists()


class RestrictedQuerySet(QuerySet[M]):
    """A queryset with the one permission gate, `restrict(user, action)` (NetBox's RestrictedQuerySet).

    Every model holding or pointing to personal data uses it (or a subclass) as its default manager
    (`objects = XQuerySet.as_manager()`). A subclass says how its rows reach their owner, by one of:

    - `gate_team`: the path of the Team that owns the row itself (Customer: "team");
    - `gate_customer`: the path of the Customer the row is about (the row is reachable when the customer is:
      a subquery over `Customer.objects.restrict(user, "view")`);
    - neither: rows that belong to no team are reachable only with the "all customers" permission, or, with
      `gate_unowned_by_model_permission`, with the model permission alone (rows that name nobody by
      themselves: tombstones hold a keyed hash only).
    Rows whose owner path is NULL (a visitor not yet identified, a purchase whose customer was erased) belong
    to no team either. On top of that the row's own model permission for `action` is required
    (`<app>.<action>_<model>`, or `gate_permissions`), as NetBox requires it.
    """

    gate_team: ClassVar[str | None] = None
    gate_customer: ClassVar[str | None] = None
    gate_unowned_by_model_permission: ClassVar[bool] = False
    # action → the model permission it needs; None: "<app_label>.<action>_<model_name>".
    gate_permissions: ClassVar[dict[str, str] | None] = None

    def gate_permission(self, action: str) -> str:
        if self.gate_permissions is not None:
            return self.gate_permissions[action]
        return f"{self.model._meta.app_label}.{action}_{self.model._meta.model_name}"

    def gate_scope_action(self, action: str) -> str:
        """The customer action a row's `action` needs: a row about a customer needs the customer to be
        visible; what may be done with the row itself is its own model permission's business."""
        return "view"

    def restrict(self, user: User, action: str = "view") -> Self:
        """The single permission gate: the rows `user` may `action` ("view", "change", "delete").

        The same for every model: an active user, superusers see all, the row's own model permission for
        the action first; then `restrict_rows`, how this model's rows reach their owner."""
        _check_action(action)
        if not _active(user):
            return self.none()
        if user.is_superuser:
            return self.all()
        if not user.has_perm(self.gate_permission(action)):
            return self.none()
        return self.restrict_rows(user, action)

    def restrict_rows(self, user: User, action: str) -> Self:
        """The rows of an active, non-superuser `user` who holds the model permission of `action`: by team,
        by customer, or by the "all customers" permission (see the class docstring). A model whose rows
        belong to something else (an incident) overrides this, never restrict()."""
        if self.gate_unowned_by_model_permission:
            return self.all()
        kind = scope_kind(user, self.gate_scope_action(action))
        if kind is None:
            return self.none()
        if kind == ALL:
            return self.all()
        if self.gate_team is not None:
            teams = team_ids_filter(user, self.gate_scope_action(action))
            return self.filter(**{f"{self.gate_team}__in": teams})
        if self.gate_customer is not None:
            visible = _crm_model("Customer").objects.restrict(user, "view").values("pk")
            return self.filter(**{f"{self.gate_customer}__in": visible})
        return self.none()


def can_view_pii(user: User) -> bool:
    """The explicit 'view personal data' permission: without it, personal values are masked."""
    return bool(getattr(user, "is_authenticated", False) and user.has_perm("crm.view_customer_pii"))
