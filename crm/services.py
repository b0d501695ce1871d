"""Writes to the customer record. The only place that changes crm state; each call is one transaction.

django-auditlog records every save and delete made here (with the actor from the request, or from
`set_actor` when a service runs outside a request); bulk paths write their own summary entries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from django.db import models, transaction
from guardian.shortcuts import assign_perm, remove_perm

from crm.audit.actors import audit_actor
from crm.classification import REDACTED, audit_masked_fields
from crm.models import AuditEntry, Customer, CustomerEvent, Purchase, Team, TeamMembership
from crm.permissions import TEAM_PERMS
from crm.validators import strings_in, validate_no_my_number

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

M = TypeVar("M", bound=models.Model)


def _acting(actor: User | None) -> Any:
    """Attribute audit entries to `actor` unless a request (the auditlog middleware) already does."""
    return audit_actor(actor)


def customer_save(*, customer: Customer, actor: User | None = None) -> Customer:
    """Validate (all field rules, My Number refusal, normalisation), refresh blind indexes and save."""
    with transaction.atomic(), _acting(actor):
        customer.full_clean()
        customer.refresh_blind_indexes()
        customer.save()
    return customer


def customer_create(*, team: Team, actor: User | None = None, **fields: Any) -> Customer:
    """Create a customer owned by `team`. Raises ValidationError (nothing written) on bad input."""
    return customer_save(customer=Customer(team=team, **fields), actor=actor)


def customer_update(*, customer: Customer, actor: User | None = None, **changes: Any) -> Customer:
    """Change fields of a customer; the whole change is refused if any field is invalid. Not the status:
    it changes only through the service that makes it true (customer_stop_use, customer_close …)."""
    if "status" in changes:
        raise ValueError("customer_update does not change the status; use the status services.")
    for name, value in changes.items():
        setattr(customer, name, value)
    return customer_save(customer=customer, actor=actor)


def access_record(*, instance: Any, actor: User | None = None) -> None:
    """Write an access entry (who looked at which record, when, from where) to the audit trail:
    django-auditlog's own, for a model registered with it (its object_repr carries no personal data)."""
    from auditlog.signals import accessed

    with _acting(actor):
        accessed.send(sender=type(instance), instance=instance)


def list_access_record(
    *,
    model: type[Any],
    object_ids: list[Any],
    actor: User | None,
    clear: bool,
    searched: bool,
    filters: dict[str, str],
    page: int,
) -> None:
    """One access entry for a page of a list of personal data (customers, 要配慮 records): who saw which
    rows, masked or in clear, and whether they searched (django-auditlog logs single-object views only). Ids,
    flags and non-personal filter values only: the search term itself is never written (it is an e-mail
    address, a phone number or a name); the ids it found are."""
    from django.contrib.contenttypes.models import ContentType
    from django.utils import translation

    with translation.override("ja"):
        label = str(model._meta.verbose_name)
    with _acting(actor):
        AuditEntry.objects.create(
            content_type=ContentType.objects.get_for_model(model),
            object_pk="changelist",
            object_repr=f"{label}一覧（{len(object_ids)}件表示）",
            action=AuditEntry.Action.ACCESS,
            actor=actor,
            additional_data={
                "list": {
                    "ids": object_ids,
                    "clear": clear,
                    "searched": searched,
                    "filters": filters,
                    "page": page,
                }
            },
        )


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
    user: User,
    role: str = TeamMembership.Role.MEMBER,
    actor: User | None = None,
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


def team_member_remove(*, membership: TeamMembership, actor: User | None = None) -> None:
    """Take `user` out of the team and revoke every team object permission they held through it."""
    with transaction.atomic(), _acting(actor):
        for perm in TEAM_PERMS.values():
            remove_perm(perm, membership.user, membership.team)
        membership.delete()


def _audit_created(instance: Any, **additional: Any) -> None:
    """One audit entry for a row of a model that auditlog does not watch (high-volume event tables).

    Values are not copied into the entry: only the names of the model's personal fields (classification
    registry), each redacted.
    """
    from django.contrib.contenttypes.models import ContentType

    AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(type(instance)),
        object_pk=str(instance.pk),
        object_id=instance.pk,
        object_repr=str(instance),
        action=AuditEntry.Action.CREATE,
        changes={name: ["None", REDACTED] for name in sorted(audit_masked_fields(instance._meta.label))},
        additional_data=additional or None,
    )


def _create_audited(instance: M, actor: User | None, **additional: Any) -> M:
    """Validate and insert a new row as `actor`, with its creation audited, in one transaction."""
    with transaction.atomic(), _acting(actor):
        instance.full_clean()
        instance.save()
        _audit_created(instance, **additional)
    return instance


def event_record(
    *,
    kind: str,
    occurred_at: Any,
    customer: Customer | None = None,
    visitor_id: str = "",
    properties: dict[str, Any] | None = None,
    source: str = "",
    actor: User | None = None,
) -> CustomerEvent:
    """Record a behavioural event (page view, purchase …) for a customer or an anonymous visitor.

    Refused (ValidationError, nothing written) without a subject, for a customer whose use is stopped
    (利用停止, APPI Art. 35) or anonymised, and when a property holds a My Number.
    """
    from django.core.exceptions import ValidationError
    from django.utils.translation import gettext as _

    if customer is None and not visitor_id:
        raise ValidationError({"customer": _("顧客か訪問者IDのどちらかを指定してください。")})
    if customer is not None and customer.status in (Customer.Status.STOP_USE, Customer.Status.ANONYMISED):
        raise ValidationError(
            {"customer": _("利用停止中（法第35条）または匿名化済みの顧客には記録できません。")}
        )
    properties = properties or {}
    for text in strings_in(properties):
        try:
            validate_no_my_number(text)
        except ValidationError as exc:
            raise ValidationError({"properties": exc.messages}) from exc
    event = CustomerEvent(
        customer=customer,
        visitor_id=visitor_id,
        kind=kind,
        occurred_at=occurred_at,
        properties=properties,
        source=source,
    )
    return _create_audited(event, actor, source=source)


def purchase_record(
    *,
    team: Team,
    order_no: str,
    amount: Any,
    channel: str,
    purchased_at: Any,
    customer: Customer | None = None,
    currency: str = "JPY",
    actor: User | None = None,
) -> Purchase:
    """Record a purchase (kept for the tax retention periods). Refused when the order number exists."""
    purchase = Purchase(
        team=team,
        customer=customer,
        order_no=order_no,
        amount=amount,
        currency=currency,
        channel=channel,
        purchased_at=purchased_at,
    )
    return _create_audited(purchase, actor)


# --- status: changed only by the service that makes it true ----------------------------------------------
#
# A status is a claim about the data (pitfalls: "a status field editable in a ModelAdmin form"): the admin
# shows it read-only and offers the actions below. 匿名化済み is written only by anonymisation and erasure
# removes the row (crm.retention.services.customer_anonymise / customer_erase).


def may_change_status(user: User | AnonymousUser, customer_id: int) -> bool:
    """Whether `user` may stop, resume or close the customer: the one gate, for "change" (the team's staff)
    or for "delete" (team leads and the request desk, who carry out 利用停止 requests, APPI Art. 35)."""
    return (
        Customer.objects.restrict(user, "change").filter(pk=customer_id).exists()
        or Customer.objects.restrict(user, "delete").filter(pk=customer_id).exists()
    )


def _lock_for_status_change(customer: Customer, actor: User) -> Customer:
    """The customer re-read under a row lock (a concurrent change wins over the page the user saw), once
    `actor` is known to be allowed to change their status; inside the caller's transaction."""
    from django.core.exceptions import PermissionDenied
    from django.utils.translation import gettext as _

    if not may_change_status(actor, customer.pk):
        raise PermissionDenied(_("この顧客の状態を変更する権限がありません。"))
    return Customer.objects.select_for_update(of=("self",)).get(pk=customer.pk)


def _status_set(
    *, customer: Customer, actor: User, allowed_from: tuple[str, ...], to: str, **fields: Any
) -> Customer:
    """Move the customer from one of `allowed_from` to `to`, re-read under a row lock (a concurrent change
    wins over the page the user saw), saved through the ORM so django-auditlog records who changed what."""
    from django.core.exceptions import ValidationError
    from django.utils.translation import gettext as _

    with transaction.atomic(), _acting(actor):
        locked = _lock_for_status_change(customer, actor)
        if locked.status not in allowed_from:
            raise ValidationError(
                _("現在の状態（%(status)s）からは変更できません。") % {"status": locked.get_status_display()}
            )
        locked.status = to
        for name, value in fields.items():
            setattr(locked, name, value)
        locked.save(update_fields=["status", *fields, "updated_at"])
    return locked


def customer_stop_use(*, customer: Customer, actor: User) -> Customer:
    """利用停止 (APPI Art. 35; GDPR Art. 18): the customer's data stays held but is no longer used; consent
    selections never return them and no behavioural event is recorded for them. Only from 有効."""
    return _status_set(
        customer=customer, actor=actor, allowed_from=(Customer.Status.ACTIVE,), to=Customer.Status.STOP_USE
    )


def customer_stop_provision(*, customer: Customer, actor: User) -> Customer:
    """第三者提供の停止 (APPI Art. 35(3)): from now on no provision to a third party may name the customer
    (consent.provision.services.provision_record refuses it). Called by the request desk's fulfilment once
    the requester's identity is verified; saved through the ORM, so django-auditlog records who set it and
    when. Setting it again keeps the first instant."""
    from django.utils import timezone

    with transaction.atomic(), _acting(actor):
        locked = _lock_for_status_change(customer, actor)
        if locked.provision_stopped_at is None:
            locked.provision_stopped_at = timezone.now()
            locked.save(update_fields=["provision_stopped_at", "updated_at"])
    return locked


def customer_resume_use(*, customer: Customer, actor: User) -> Customer:
    """End a 利用停止 (the ground no longer applies, or the person asks): back to 有効."""
    return _status_set(
        customer=customer, actor=actor, allowed_from=(Customer.Status.STOP_USE,), to=Customer.Status.ACTIVE
    )


def customer_close(*, customer: Customer, actor: User) -> Customer:
    """退会: the person leaves; the closing time starts the retention policies' "退会からN日" clock. Only
    from 有効 (a stopped customer stays stopped until the stop is lifted, so no use starts again)."""
    from django.utils import timezone

    return _status_set(
        customer=customer,
        actor=actor,
        allowed_from=(Customer.Status.ACTIVE,),
        to=Customer.Status.CLOSED,
        closed_at=timezone.now(),
    )
