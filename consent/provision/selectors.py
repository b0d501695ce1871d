"""Reads of third-party provision: the recipients' flags (one selector, on a worked date), the cross-border
basis on file, provision records about a person (for the disclosure package, APPI 33(5)), the data map's
graph, the record of processing (GDPR Art. 30) and the data dictionary."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.utils import timezone

from consent.provision import rules
from consent.provision.dictionary import crm_data_categories
from consent.provision.models import (
    CrossBorderBasis,
    DataFlow,
    DataSystem,
    ProcessorAudit,
    ProcessorContract,
    ProvisionRecord,
    ReceiptRecord,
    Recipient,
)
from crm.retention.models import RetentionPolicy
from crm.retention.rules import JST

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


def today() -> dt.date:
    """Today in Asia/Tokyo: the day every rule of this package is evaluated on by default."""
    return timezone.now().astimezone(JST).date()


def providable_recipients(user: User | AnonymousUser) -> QuerySet[Recipient]:
    """The recipients `user` may provide personal data to: those they may see (restrict), and none without
    the permission to write a provision record (consent.add_provisionrecord)."""
    if not user.has_perm("consent.add_provisionrecord"):
        return Recipient.objects.none()
    return Recipient.objects.restrict(user, "view")


def recipient_choices(user: User | AnonymousUser) -> list[tuple[str, str]]:
    """(id, "name（kind・country）") of providable_recipients: the choices of crm's segment export form."""
    return [
        (str(r.pk), f"{r.name}（{r.get_kind_display()}・{r.country}）")
        for r in providable_recipients(user).order_by("name")
    ]


def transfer_basis(*, recipient: Recipient, on: dt.date) -> CrossBorderBasis | None:
    """The cross-border basis standing for `recipient` on `on` (APPI 28), the most recent first; None when
    none stands (a domestic recipient needs none: callers ask only for a foreign one)."""
    bases = CrossBorderBasis.objects.filter(recipient=recipient, effective_on__lte=on).select_related(
        "recipient", "purpose"
    )
    for basis in bases.order_by("-effective_on", "-pk"):
        if basis.holds_on(on):
            return basis
    return None


def with_flag_facts(qs: QuerySet[Recipient], *, on: dt.date) -> QuerySet[Recipient]:
    """`qs` annotated with what the flags are computed from: the latest contract's clauses and expiry, the
    latest audit's next due date, and whether a cross-border basis may stand on `on` (checked exactly by
    recipient_flags for the few recipients that have one)."""
    latest_contract = ProcessorContract.objects.filter(recipient=OuterRef("pk")).order_by("-signed_on", "-pk")
    latest_audit = ProcessorAudit.objects.filter(recipient=OuterRef("pk")).order_by("-audited_on", "-pk")
    annotations: dict[str, Any] = {
        f"c_{name}": Subquery(latest_contract.values(name)[:1]) for name in rules.CONTRACT_CLAUSES
    }
    return qs.annotate(
        **annotations,
        c_id=Subquery(latest_contract.values("pk")[:1]),
        c_expires_on=Subquery(latest_contract.values("expires_on")[:1]),
        a_next_due=Subquery(latest_audit.values("next_due_on")[:1]),
        a_exists=Exists(ProcessorAudit.objects.filter(recipient=OuterRef("pk"))),
        xb_candidate=Exists(
            CrossBorderBasis.objects.filter(recipient=OuterRef("pk"), effective_on__lte=on).exclude(
                withdrawn_on__lte=on
            )
        ),
    )


def flags_of(recipient: Any, *, on: dt.date) -> list[str]:
    """The flags of one recipient annotated by with_flag_facts (rules.recipient_flags on its facts)."""
    foreign = recipient.foreign
    basis_holds = bool(
        foreign and recipient.xb_candidate and transfer_basis(recipient=recipient, on=on) is not None
    )
    clauses = (
        {name: bool(getattr(recipient, f"c_{name}")) for name in rules.CONTRACT_CLAUSES}
        if recipient.c_id is not None
        else None
    )
    return rules.recipient_flags(
        is_processor=recipient.kind == Recipient.Kind.PROCESSOR,
        foreign=foreign,
        on=on,
        clauses=clauses,
        contract_expires_on=recipient.c_expires_on,
        audit_next_due=recipient.a_next_due,
        has_audit=recipient.a_exists,
        transfer_basis_holds=basis_holds,
    )


def recipient_flags(*, user: User | AnonymousUser, on: dt.date | None = None) -> dict[int, list[str]]:
    """Every recipient `user` may see → its flags on `on` (default: today, JST): missing clauses, no or
    expired contract, no or overdue audit, a foreign recipient without a cross-border basis. The one
    selector the recipient list and a compliance checklist read."""
    on = on or today()
    rows = with_flag_facts(Recipient.objects.restrict(user, "view"), on=on)
    return {r.pk: flags_of(r, on=on) for r in rows}


def provision_records_for_customer(
    *, user: User | AnonymousUser, customer_id: int
) -> dict[str, list[dict[str, Any]]]:
    """The provision records (APPI 29) and receipt records (APPI 30) about one customer, as the disclosure
    package lists them (APPI 33(5)): recipient or provider, dates, items, basis. Through the gate: nothing
    for a user who may not see the customer."""
    provided = (
        ProvisionRecord.objects.restrict(user, "view")
        .filter(subjects__customer_id=customer_id)
        .select_related("recipient")
        .order_by("first_provided_on", "pk")
    )
    received = (
        ReceiptRecord.objects.restrict(user, "view")
        .filter(subjects__customer_id=customer_id)
        .order_by("received_on", "pk")
    )
    return {
        "provided": [
            {
                "record": r.pk,
                "recipient": r.recipient.name,
                "recipient_country": r.recipient.country,
                "first_provided_on": r.first_provided_on.isoformat(),
                "last_provided_on": r.last_provided_on.isoformat(),
                "data_items": list(r.data_items),
                "basis": r.get_basis_display(),
            }
            for r in provided
        ],
        "received": [
            {
                "record": r.pk,
                "provider": r.provider_name,
                "provider_address": r.provider_address,
                "acquisition": r.acquisition,
                "received_on": r.received_on.isoformat(),
                "data_items": list(r.data_items),
            }
            for r in received
        ],
    }


def records_due(trigger: str, days: int, as_of: dt.datetime) -> list[QuerySet[Any]]:
    """The provision and receipt records a retention policy removes at `as_of` (crm.retention's record
    scope): those whose statutory keeping period (keep_until, 規則21・24) ended at least `days` days before
    the JST day of `as_of`. Only the trigger "period ended" applies to records."""
    if trigger != RetentionPolicy.Trigger.PERIOD_ENDED:
        raise ValueError("第三者提供・受領の記録には「法定保存期間の満了」の契機のみ使えます（規則21・24）。")
    cutoff = as_of.astimezone(JST).date() - dt.timedelta(days=days)
    return [
        ProvisionRecord.objects.filter(keep_until__lt=cutoff),
        ReceiptRecord.objects.filter(keep_until__lt=cutoff),
    ]


# --- the data map -------------------------------------------------------------------------------------


@dataclass
class Graph:
    """Nodes (systems and recipients) and edges (flows) of the data map."""

    nodes: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)


def system_categories(system: DataSystem) -> list[str]:
    """The data classes a system holds: for this CRM, read from the classification registry."""
    if system.is_this_crm:
        return crm_data_categories()
    return list(system.data_categories)


def data_map_graph(*, user: User | AnonymousUser) -> Graph:
    """The data map as a graph: every system and recipient the user may see, and every flow between them."""
    graph = Graph()
    systems = list(DataSystem.objects.restrict(user, "view"))
    recipients = list(Recipient.objects.restrict(user, "view"))
    for s in systems:
        graph.nodes.append(
            {
                "id": f"s{s.pk}",
                "label": s.name,
                "kind": "crm" if s.is_this_crm else "system",
                "country": s.country,
                "categories": system_categories(s),
            }
        )
    for r in recipients:
        graph.nodes.append(
            {
                "id": f"r{r.pk}",
                "label": r.name,
                "kind": r.kind,
                "country": r.country,
                "categories": list(r.data_categories),
            }
        )
    flows = (
        DataFlow.objects.restrict(user, "view")
        .select_related("purpose")
        .filter(source__in=[s.pk for s in systems])
    )
    known = {n["id"] for n in graph.nodes}
    for f in flows:
        target = f"s{f.target_system_id}" if f.target_system_id else f"r{f.target_recipient_id}"
        if target not in known:
            continue
        graph.edges.append(
            {
                "id": f"f{f.pk}",
                "source": f"s{f.source_id}",
                "target": target,
                "label": f"{f.purpose.code}（{f.get_frequency_display()}）",
            }
        )
    return graph
