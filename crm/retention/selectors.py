"""Reads of the retention engine: the retention predicate (one definition for the dry run and the real run),
the admin preview, and the consent-based trigger asked of the source the consent app registers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef, Q, QuerySet

from crm.classification import REGISTRY, mask_value
from crm.models import Customer, CustomerEvent
from crm.retention import participants, rules
from crm.retention.models import LegalHold, RetentionPolicy
from crm.retention.services import cascade, clearing

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

Scope = RetentionPolicy.Scope
Trigger = RetentionPolicy.Trigger
Action = RetentionPolicy.Action

# Scopes whose data lives in this app; the others belong to apps that register a handler later.
CUSTOMER_SCOPES = frozenset({Scope.CUSTOMERS, Scope.MARKETING, Scope.BEHAVIOURAL})


class ConsentUnavailable(RuntimeError):
    """The consent app (its ledger) is not installed yet: a consent-based trigger cannot be evaluated."""


def consent_withdrawn_customer_ids(
    purpose_code: str, days: int, as_of: dt.datetime | None = None
) -> QuerySet[Any]:
    """Ids of customers whose consent for `purpose_code` was withdrawn at least `days` days before `as_of`.

    Asked of the source the consent app registers (crm.retention.participants): crm never imports consent
    (the dependency arrow points consent → crm). The run's frozen `as_of` is passed so that every batch of
    a run sees the same cutoff. No source registered, or an unknown purpose code: ConsentUnavailable, with
    the reason.
    """
    source = participants.consent_withdrawn_source()
    if source is None:
        raise ConsentUnavailable("同意台帳（consentアプリ）が未導入のため、同意撤回の契機を評価できません。")
    try:
        return source(purpose_code, days, as_of)
    except ValidationError as exc:
        raise ConsentUnavailable(" ".join(exc.messages)) from exc


def records_due(policy: RetentionPolicy, as_of: dt.datetime) -> list[QuerySet[Any]]:
    """The rows a policy of a record scope removes at `as_of`, per model, asked of the app that registered
    the scope (crm.retention.participants). ValueError for a scope nobody registered or a trigger the
    scope does not know."""
    scope = participants.record_scope(policy.scope)
    if scope is None:
        raise ValueError(f"scope {policy.scope!r} has no registered records")
    return scope.due(policy.trigger, policy.days, as_of)


def held_q(as_of: dt.datetime) -> Exists:
    """Customers under a legal hold in force at `as_of`."""
    return Exists(LegalHold.objects.active(as_of).filter(customer_id=OuterRef("pk")))


def _trigger_q(policy: RetentionPolicy, as_of: dt.datetime) -> Q:
    cutoff = rules.trigger_cutoff(as_of, policy.days)
    if policy.trigger == Trigger.INACTIVE:
        # No recorded activity: the registration date is the last sign of life.
        return Q(last_activity_at__lt=cutoff) | Q(last_activity_at__isnull=True, created_at__lt=cutoff)
    if policy.trigger == Trigger.ACCOUNT_CLOSED:
        return Q(closed_at__lt=cutoff)
    if policy.trigger == Trigger.CONSENT_WITHDRAWN:
        return Q(pk__in=consent_withdrawn_customer_ids(policy.consent_purpose, policy.days, as_of))
    if policy.trigger == Trigger.RECORD_AGE:
        if policy.scope == Scope.BEHAVIOURAL:
            old = CustomerEvent.objects.filter(customer_id=OuterRef("pk"), occurred_at__lt=cutoff)
            return Q(Exists(old))
        return Q(collected_at__lt=cutoff)
    raise ValueError(f"unknown trigger {policy.trigger!r}")


def _pending_q(policy: RetentionPolicy, as_of: dt.datetime) -> Q:
    """What is still left to do: the part of the predicate that makes a second pass a no-op."""
    if policy.scope == Scope.CUSTOMERS:
        if policy.action == Action.ERASE:
            return Q()  # an erased row is gone
        if policy.action == Action.ANONYMISE:
            return ~Q(status=Customer.Status.ANONYMISED)
        # Pseudonymised: direct identifiers and their blind indexes are gone.
        return ~Q(status=Customer.Status.ANONYMISED) & ~Q(name_bidx="")
    if policy.scope == Scope.MARKETING:
        # Only JSON fields carry marketing data today; any of them still holding a value means work left.
        q = Q()
        for name in marketing_fields():
            q |= ~Q(**{name: {}})
        return q
    if policy.scope == Scope.BEHAVIOURAL:
        events = CustomerEvent.objects.filter(customer_id=OuterRef("pk"))
        if policy.trigger == Trigger.RECORD_AGE:
            events = events.filter(occurred_at__lt=rules.trigger_cutoff(as_of, policy.days))
        return Q(Exists(events))
    raise ValueError(f"scope {policy.scope!r} is not walked over customers")


def marketing_fields() -> list[str]:
    """Customer fields of the marketing_preferences retention category (classification registry)."""
    return [
        name
        for name, spec in REGISTRY.models.get(Customer._meta.label, {}).items()
        if spec.retention == "marketing_preferences"
    ]


def due_q(policy: RetentionPolicy, as_of: dt.datetime) -> Q:
    """The retention predicate without holds: the trigger has fired and work is left to do."""
    return _trigger_q(policy, as_of) & _pending_q(policy, as_of)


def actionable(policy: RetentionPolicy, as_of: dt.datetime, base: QuerySet[Customer] | None = None) -> Any:
    """Customers the policy acts on at `as_of`: due and not held. The real run re-checks exactly this."""
    qs = Customer.objects.all() if base is None else base
    return qs.filter(due_q(policy, as_of)).exclude(held_q(as_of))


def held(policy: RetentionPolicy, as_of: dt.datetime, base: QuerySet[Customer] | None = None) -> Any:
    """Customers the policy would act on but for a legal hold."""
    qs = Customer.objects.all() if base is None else base
    return qs.filter(due_q(policy, as_of)).filter(held_q(as_of))


@dataclass(frozen=True)
class PolicyPreview:
    """What a run started now would do (dry run)."""

    affected: int
    held: int
    sample: list[dict[str, str]]
    unavailable_reason: str = ""


SAMPLE_FIELDS = ("family_name", "given_name", "email", "prefecture")


def retention_preview(
    *,
    user: User | AnonymousUser,
    policy: RetentionPolicy,
    as_of: dt.datetime,
    sample_size: int = 10,
) -> PolicyPreview:
    """Dry run of `policy` at `as_of` over the customers `user` may see: counts and a masked sample.

    The counts come from the same predicate the run re-checks in its acting statement (`actionable`), so for
    a user who sees every customer (個人情報保護管理者) they equal what a run started at `as_of` does.
    """
    if participants.record_scope(policy.scope) is not None:
        # Records name no customer by themselves: counts only (the run deletes exactly these rows).
        try:
            return PolicyPreview(sum(qs.count() for qs in records_due(policy, as_of)), 0, [])
        except ValueError as exc:
            return PolicyPreview(0, 0, [], str(exc))
    if policy.scope not in CUSTOMER_SCOPES:
        return PolicyPreview(0, 0, [], "この対象の処理は未導入です（担当アプリの導入後に有効になります）。")
    base = Customer.objects.restrict(user, "view")
    try:
        todo = actionable(policy, as_of, base)
        n_affected = todo.count()
        n_held = held(policy, as_of, base).count()
    except ConsentUnavailable as exc:
        return PolicyPreview(0, 0, [], str(exc))
    label = Customer._meta.label
    sample = []
    for c in todo.order_by("pk").only("pk", "last_activity_at", "closed_at", *SAMPLE_FIELDS)[:sample_size]:
        # Masked whatever the user's permission: the preview is a check of the rule, not a way to read data.
        row = {"id": str(c.pk)}
        row.update({name: str(mask_value(label, name, getattr(c, name)) or "") for name in SAMPLE_FIELDS})
        row["last_activity_at"] = c.last_activity_at.date().isoformat() if c.last_activity_at else ""
        sample.append(row)
    return PolicyPreview(n_affected, n_held, sample)


def legal_holds_for(*, user: User | AnonymousUser) -> QuerySet[LegalHold]:
    """Holds `user` may see (the gate: holds on customers they may see)."""
    return LegalHold.objects.restrict(user, "view")


@dataclass
class RelatedFate:
    """Rows of one related model and what erasure or anonymisation does to them."""

    label: str  # the model's verbose name (plural)
    count: int
    removed: bool  # deleted with the customer; otherwise kept, no longer linked to the person
    statutory: bool  # kept because a law says so (tax and accounting records)


@dataclass
class ErasurePreview:
    """What `customer_erase` / `customer_anonymise` would do to one customer, for the confirmation page.
    Field and model names and counts only: no personal value."""

    action: str
    removed_fields: list[str]
    generalised: list[tuple[str, str]]  # (field removed, what is kept instead)
    related: list[RelatedFate]
    holds: list[LegalHold]

    @property
    def held(self) -> bool:
        """A legal hold in force: the service leaves the customer untouched."""
        return bool(self.holds)


def _customer_field_label(name: str) -> str:
    # get_field is typed to return relations too; the fields named here are Customer's own columns.
    return str(cast(models.Field, Customer._meta.get_field(name)).verbose_name)


def customer_erasure_preview(
    *, user: User | AnonymousUser, customer_id: int, action: str, as_of: dt.datetime
) -> ErasurePreview | None:
    """The confirmation page's list for one customer the user may erase ("delete" through the one gate):
    None when the gate does not open the customer to the user."""
    customer = Customer.objects.restrict(user, "delete").filter(pk=customer_id).only("pk").first()
    if customer is None:
        return None
    opts = Customer._meta
    if action == Action.ERASE:
        removed = [f for f in opts.concrete_fields if f.name in REGISTRY.personal_fields(opts.label)]
        traces: list[clearing.Generalised] = []
    else:
        # As the engine anonymises: what the registry clears, and the traces its generalisations leave.
        cleared = clearing.anonymise_fields(Customer)
        traces = clearing.generalisations(Customer, cleared)
        removed = [f for f in cleared if f.name not in {t.target.name for t in traces}]
    removed = [f for f in removed if f.editable]  # blind indexes go too, but are not something a user knows
    related = []
    for rel in cascade.relations_to(Customer):
        model = cast(type[models.Model], rel.related_model)  # a reverse relation's model is resolved
        count = model._default_manager.filter(**{rel.field.name: customer.pk}).count()
        if not count:
            continue
        # As cascade.follow does: erasure deletes what cascades; anonymisation unlinks what can be unlinked.
        deleted = rel.on_delete is models.CASCADE and (action == Action.ERASE or not rel.field.null)
        statutory = any(
            spec.retention in clearing.STATUTORY_CATEGORIES
            for spec in REGISTRY.models.get(model._meta.label, {}).values()
        )
        related.append(RelatedFate(str(model._meta.verbose_name_plural), count, deleted, statutory))
    holds = list(LegalHold.objects.active(as_of).filter(customer_id=customer.pk).order_by("placed_at"))
    return ErasurePreview(
        action=action,
        removed_fields=[str(f.verbose_name) for f in removed],
        generalised=[(str(t.source.verbose_name), str(t.target.verbose_name)) for t in traces],
        related=related,
        holds=holds,
    )
