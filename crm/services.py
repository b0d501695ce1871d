"""Writes to the customer record. The only place that changes crm state; each call is one transaction.

django-auditlog records every save and delete made here (with the actor from the request, or from
`set_actor` when a service runs outside a request); bulk paths write their own summary entries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from crm.models import Customer, Team, TeamMembership
from crm.permissions import TEAM_PERMS

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


def _acting(actor: AbstractBaseUser | None) -> Any:
    """Attribute audit entries to `actor` unless a request (the auditlog middleware) already does."""
    from crm.audit import audit_actor

    return audit_actor(actor)


def customer_save(*, customer: Customer, actor: AbstractBaseUser | None = None) -> Customer:
    """Validate (all field rules, My Number refusal, normalisation), refresh blind indexes and save."""
    with transaction.atomic(), _acting(actor):
        customer.full_clean()
        customer.refresh_blind_indexes()
        customer.save()
    return customer


def customer_create(*, team: Team, actor: AbstractBaseUser | None = None, **fields: Any) -> Customer:
    """Create a customer owned by `team`. Raises ValidationError (nothing written) on bad input."""
    return customer_save(customer=Customer(team=team, **fields), actor=actor)


def customer_update(*, customer: Customer, actor: AbstractBaseUser | None = None, **changes: Any) -> Customer:
    """Change fields of a customer; the whole change is refused if any field is invalid."""
    for name, value in changes.items():
        setattr(customer, name, value)
    return customer_save(customer=customer, actor=actor)


def customer_access_record(*, customer: Customer, actor: AbstractBaseUser | None = None) -> None:
    """Write an access entry (who looked at which customer, when) to the audit trail."""
    from auditlog.signals import accessed

    with _acting(actor):
        accessed.send(sender=Customer, instance=customer)


def _sync_team_perms(membership: TeamMembership) -> None:
    wanted = {"view", "change"} | ({"delete"} if membership.role == TeamMembership.Role.LEAD else set())
    for action, perm in TEAM_PERMS.items():
        if action in wanted:
            assign_perm(perm, membership.user, membership.team)
        else:
            remove_perm(perm, membership.user, membership.team)


def team_member_add(
    *,
    team: Team,
    user: AbstractBaseUser,
    role: str = TeamMembership.Role.MEMBER,
    actor: AbstractBaseUser | None = None,
) -> TeamMembership:
    """Put `user` in `team` (or change their role) and grant the matching team object permissions."""
    with transaction.atomic(), _acting(actor):
        membership = TeamMembership.objects.filter(team=team, user=user).first()
        if membership is None:
            membership = TeamMembership(team=team, user=user, role=role)
        membership.role = role
        membership.full_clean(validate_unique=False)
        membership.save()
        _sync_team_perms(membership)
    return membership


def team_member_remove(*, membership: TeamMembership, actor: AbstractBaseUser | None = None) -> None:
    """Take `user` out of the team and revoke every team object permission they held through it."""
    with transaction.atomic(), _acting(actor):
        for perm in TEAM_PERMS.values():
            remove_perm(perm, membership.user, membership.team)
        membership.delete()
