"""The erasure engine: the one erasure path of the retention engine and of the request desk.

`customer_erase` / `customer_anonymise` / `customer_pseudonymise` / `customer_category_erase` are the only
code that erases or anonymises a customer: retention runs call `act` batch by batch (crm.retention.services.
runs) and the request desk (開示等請求: 利用停止・消去, APPI Art. 35; GDPR Art. 17) calls them for one person.
Each call:

- works on a list of ids already locked (`FOR UPDATE`) in the caller's transaction;
- re-checks the retention predicate (or, for the request desk, "not under a legal hold") inside the very
  statement that acts, so a hold placed or an activity recorded after the ids were picked still wins;
- acts with set-based SQL (auditlog's signals do not see it), then writes tombstones and one summary audit
  entry, all in the caller's transaction: a person is erased whole or not at all.

What is removed, kept or generalised is read from the classification registry (crm.retention.services.
clearing); tables and columns from the models' metadata.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db import connection, models, transaction
from django.db.models import QuerySet
from django.utils import timezone

from crm.classification import REGISTRY
from crm.models import Customer, CustomerEvent
from crm.retention import participants, rules, selectors
from crm.retention.models import RetentionPolicy, RetentionRun
from crm.retention.services.batch_audit import batch_audit_write
from crm.retention.services.cascade import follow, protected_sql, relations_to, unlink_sets
from crm.retention.services.clearing import (
    anonymise_fields,
    clear_sets,
    column,
    concrete_field,
    generalisations,
    generalised_values,
    pk,
    pseudonymise_fields,
    quote,
    table,
    unlink_fields,
)
from crm.retention.services.errors import ErasePermissionDenied, RetentionError
from crm.retention.services.tombstones import tombstones_write

if TYPE_CHECKING:
    import datetime as dt

    from django.contrib.auth.models import User

log = logging.getLogger(__name__)

Scope = RetentionPolicy.Scope
Action = RetentionPolicy.Action


@dataclasses.dataclass
class Outcome:
    """What one call of the erasure path did. Ids only, never values."""

    acted: list[int] = dataclasses.field(default_factory=list)
    held: list[int] = dataclasses.field(default_factory=list)
    failures: Counter[str] = dataclasses.field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


def _predicate_sql(predicate: QuerySet[Customer]) -> tuple[str, tuple[Any, ...]]:
    sql, params = predicate.values("pk").query.sql_with_params()
    return sql, tuple(params)


def _category_fields(model: type[models.Model], category: str) -> list[models.Field[Any, Any]]:
    """Fields of `model` the registry files under retention category `category`."""
    return [
        concrete_field(model, n)
        for n, s in REGISTRY.models.get(model._meta.label, {}).items()
        if s.retention == category
    ]


Predicate = tuple[str, tuple[Any, ...]]  # the acting statement's re-check: SQL of the ids still due, params


def act(
    *,
    ids: list[int],
    scope: str,
    action: str,
    predicate: QuerySet[Customer],
    as_of: dt.datetime,
    reason: str,
    actor: User | None,
    policy: RetentionPolicy | None,
    run: RetentionRun | None,
    trigger: str = "",
    days: int = 0,
) -> Outcome:
    """Apply `action` on `scope` to the locked `ids` that still satisfy `predicate`; inside a transaction.

    One statement acts on the customers and re-checks the predicate itself; linked rows and participants
    follow; then one tombstone per acted id and one summary audit entry naming the cleared fields."""
    out = Outcome()
    if not ids:
        return out
    # The predicate narrowed to these ids: the planner checks it row by row through the primary key instead
    # of evaluating it over the whole table once per batch.
    pred = _predicate_sql(predicate.filter(pk__in=ids))
    now = timezone.now()
    with connection.cursor() as cur:
        if scope == Scope.CUSTOMERS and action == Action.ERASE:
            cleared = _customers_erase(cur, out, ids, pred, reason=reason, actor=actor)
        elif scope == Scope.CUSTOMERS:
            cleared = _customers_anonymise(
                cur, out, ids, pred, action=action, as_of=as_of, now=now, reason=reason, actor=actor
            )
        elif scope == Scope.MARKETING:
            cleared = _marketing_erase(cur, out, ids, pred, now=now)
        elif scope == Scope.BEHAVIOURAL:
            cleared = _behavioural_act(
                cur, out, ids, pred, action=action, trigger=trigger, as_of=as_of, days=days
            )
        else:
            raise RetentionError(f"対象「{scope}」の処理は未導入です。")
    if out.acted:
        tombstones_write(out.acted, scope=scope, action=action, reason=reason, policy=policy, run=run, at=now)
        batch_audit_write(
            action=action,
            scope=scope,
            ids=out.acted,
            reason=reason,
            actor=actor,
            policy=policy,
            run=run,
            cleared=cleared,
        )
    return out


def _customers_erase(
    cur: Any, out: Outcome, ids: list[int], pred: Predicate, *, reason: str, actor: User | None
) -> list[str]:
    """Delete the customers still due (unless a protecting relation forbids it), then let the participants
    erase what they hold and follow every relation (cascade or unlink)."""
    pred_sql, pred_params = pred
    customers, c_id = table(Customer), pk(Customer)
    protected, names = protected_sql(Customer, "c")
    extra = f" AND {protected}" if protected else ""
    cur.execute(
        f"DELETE FROM {customers} c WHERE c.{c_id} = ANY(%s) AND c.{c_id} IN ({pred_sql}){extra} "  # noqa: S608
        f"RETURNING c.{c_id}",
        [ids, *pred_params],
    )
    out.acted = sorted(r[0] for r in cur.fetchall())
    if protected and len(out.acted) < len(ids):
        # Which of the others a protecting relation kept (the rest no longer matched the predicate).
        rest = sorted(set(ids) - set(out.acted))
        cur.execute(
            f"SELECT count(*) FROM {customers} c WHERE c.{c_id} = ANY(%s) "  # noqa: S608
            f"AND c.{c_id} IN ({pred_sql}) AND NOT ({protected})",
            [rest, *pred_params],
        )
        n = cur.fetchone()[0]
        if n:
            out.failures["protected_by:" + ",".join(names)] += n
    _participants_erase(out.acted, action=Action.ERASE, reason=reason, actor=actor)
    for rel in relations_to(Customer):
        follow(rel, out.acted, unlink=False)
    return []


def _customers_anonymise(
    cur: Any,
    out: Outcome,
    ids: list[int],
    pred: Predicate,
    *,
    action: str,
    as_of: dt.datetime,
    now: dt.datetime,
    reason: str,
    actor: User | None,
) -> list[str]:
    """Anonymise or pseudonymise the customers still due: the registry's fields emptied and its declared
    generalisations written, by one statement; anonymisation then unlinks the rows pointing at them."""
    pred_sql, pred_params = pred
    customers, c_id = table(Customer), pk(Customer)
    fields = anonymise_fields(Customer) if action == Action.ANONYMISE else pseudonymise_fields(Customer)
    # What the cleared fields leave behind (birth date → age band …), computed in Python from the decrypted
    # values and written by the same statement.
    gens = generalisations(Customer, fields)
    v_ids, v_columns = generalised_values(Customer, ids, gens, as_of.astimezone(rules.JST).date())
    sets = clear_sets(fields, skip=frozenset(g.target.column for g in gens))
    sets += [f"{quote(g.target.column)} = v.g{i}" for i, g in enumerate(gens)]
    sets.append(f"{column(Customer, 'updated_at')} = %s")
    params: list[Any] = [now]
    if action == Action.ANONYMISE:
        sets.append(f"{column(Customer, 'status')} = %s")
        params.append(Customer.Status.ANONYMISED)
    arrays = [f"%s::{concrete_field(Customer, 'id').db_type(connection)}[]"]
    arrays += [f"%s::{g.target.db_type(connection)}[]" for g in gens]
    aliases = ", ".join(["id", *(f"g{i}" for i in range(len(gens)))])
    cur.execute(
        f"UPDATE {customers} c SET {', '.join(sets)} "  # noqa: S608
        f"FROM unnest({', '.join(arrays)}) AS v({aliases}) "
        f"WHERE c.{c_id} = v.id AND c.{c_id} IN ({pred_sql}) RETURNING c.{c_id}",
        [*params, v_ids, *v_columns, *pred_params],
    )
    out.acted = sorted(r[0] for r in cur.fetchall())
    if action == Action.ANONYMISE:
        _participants_erase(out.acted, action=action, reason=reason, actor=actor)
        # Purchases and events stay for analytics, no longer linked to a person.
        for rel in relations_to(Customer):
            follow(rel, out.acted, unlink=True)
    return [f.name for f in fields]


def _marketing_erase(
    cur: Any, out: Outcome, ids: list[int], pred: Predicate, *, now: dt.datetime
) -> list[str]:
    """Empty the customers' marketing_preferences category (registry) where the predicate still holds."""
    pred_sql, pred_params = pred
    customers, c_id = table(Customer), pk(Customer)
    fields = [concrete_field(Customer, n) for n in selectors.marketing_fields()]
    sets = [*clear_sets(fields), f"{column(Customer, 'updated_at')} = %s"]
    cur.execute(
        f"UPDATE {customers} c SET {', '.join(sets)} "  # noqa: S608
        f"WHERE c.{c_id} = ANY(%s) AND c.{c_id} IN ({pred_sql}) RETURNING c.{c_id}",
        [now, ids, *pred_params],
    )
    out.acted = sorted(r[0] for r in cur.fetchall())
    return [f.name for f in fields]


def _behavioural_act(
    cur: Any,
    out: Outcome,
    ids: list[int],
    pred: Predicate,
    *,
    action: str,
    trigger: str,
    as_of: dt.datetime,
    days: int,
) -> list[str]:
    """Delete (erase) or unlink (anonymise) the customers' behavioural events — only the old ones for the
    record-age trigger — and, unless only old events went, their behavioural identifiers (registry)."""
    pred_sql, pred_params = pred
    events, e_id = table(CustomerEvent), pk(CustomerEvent)
    link_field = CustomerEvent._meta.get_field("customer")
    link = quote(link_field.column)
    age = ""
    params = [ids, *pred_params]
    if trigger == RetentionPolicy.Trigger.RECORD_AGE:
        age = f" AND e.{column(CustomerEvent, 'occurred_at')} < %s"
        params.append(rules.trigger_cutoff(as_of, days))
    if action == Action.ERASE:
        stmt = (
            f"DELETE FROM {events} e WHERE e.{link} = ANY(%s) "  # noqa: S608
            f"AND e.{link} IN ({pred_sql}){age} RETURNING e.{link}"
        )
    else:
        # The CTE keeps the old link so the statement can say whose events it unlinked; the events lose what
        # the registry says an unlinked row loses (their visitor id).
        sets = unlink_sets(CustomerEvent, link_field.column, free_text=False)
        stmt = (
            f"WITH old AS (SELECT e.{e_id} AS id, e.{link} AS customer_id FROM {events} e "  # noqa: S608
            f"WHERE e.{link} = ANY(%s) AND e.{link} IN ({pred_sql}){age} FOR UPDATE) "
            f"UPDATE {events} u SET {', '.join(sets)} FROM old WHERE u.{e_id} = old.id "
            "RETURNING old.customer_id"
        )
    cur.execute(stmt, params)
    out.acted = sorted({r[0] for r in cur.fetchall() if r[0] is not None})
    if trigger == RetentionPolicy.Trigger.RECORD_AGE or not out.acted:
        return []
    # The person's behavioural identifiers (the device id): the registry's "behavioural" category.
    fields = _category_fields(Customer, Scope.BEHAVIOURAL)
    if fields:
        cur.execute(
            f"UPDATE {table(Customer)} SET {', '.join(clear_sets(fields))} WHERE {pk(Customer)} = ANY(%s)",  # noqa: S608
            [out.acted],
        )
    return [f.name for f in fields]


def _participants_erase(ids: list[int], *, action: str, reason: str, actor: User | None) -> None:
    """Let every registered participant (crm.retention.participants; e.g. the consent ledger's evidence)
    erase what it holds about `ids`, in this transaction and before the linked rows are deleted/unlinked."""
    if not ids:
        return
    for participant in participants.erasure_participants():
        participant.step(customer_ids=ids, action=action, reason=reason, actor=actor)


def visitor_events_erase(*, visitor_ids: Iterable[str], action: str) -> int:
    """Behavioural events recorded for an anonymous visitor (no customer yet) under cookie ids the caller
    has linked to a person being erased or anonymised: erasure deletes them, anonymisation keeps them for
    analytics without the cookie id (as it does with the person's own events: what the registry says an
    unlinked row loses). Called by the erasure participant that knows the links (the consent app's visitor
    links), inside the erasure's transaction. Returns the number of events changed."""
    ids = sorted({v for v in visitor_ids if v})
    if not ids:
        return 0
    events = table(CustomerEvent)
    link = CustomerEvent._meta.get_field("customer").column
    where = f"{quote(link)} IS NULL AND {column(CustomerEvent, 'visitor_id')} = ANY(%s)"
    with connection.cursor() as cur:
        if action == Action.ERASE:
            cur.execute(f"DELETE FROM {events} WHERE {where}", [ids])  # noqa: S608
        else:
            sets = clear_sets(unlink_fields(CustomerEvent, free_text=False), skip=frozenset({link}))
            if not sets:
                return 0
            cur.execute(f"UPDATE {events} SET {', '.join(sets)} WHERE {where}", [ids])  # noqa: S608
        return cur.rowcount


def _lock_for_request(customer_ids: Iterable[int]) -> list[int]:
    ids = sorted({int(i) for i in customer_ids})
    # Plain FOR UPDATE (no SKIP LOCKED): a person's own request waits for a concurrent batch rather than
    # silently skipping them. Ordered ids: two requests never deadlock on each other.
    return list(
        Customer.objects.filter(pk__in=ids)
        .order_by("pk")
        .select_for_update(of=("self",))
        .values_list("pk", flat=True)
    )


def _require_erase_permission(actor: User | None, ids: list[int]) -> None:
    """A person acting (not a scheduled run: actor None) erases only the customers the one gate opens to them
    for "delete" (crm.permissions): the whole call is refused, nothing written, when any one is outside."""
    if actor is None or not ids:
        return
    allowed = Customer.objects.restrict(actor, "delete").filter(pk__in=ids).count()
    if allowed != len(ids):
        log.warning(
            "erasure refused: actor %s lacks the erase permission for %d of %d customers",
            actor.pk,
            len(ids) - allowed,
            len(ids),
        )
        raise ErasePermissionDenied("消去・匿名化する権限のない顧客が含まれています。何も変更していません。")


def _request_path(
    *,
    customer_ids: Iterable[int],
    scope: str,
    action: str,
    reason: str,
    actor: User | None,
    policy: RetentionPolicy | None = None,
    run: RetentionRun | None = None,
) -> Outcome:
    """Act on the customers a person's request (or a tombstone's reapplication) names: locked, the actor's
    permission checked, the ones under a legal hold left out and listed in `held`."""
    with transaction.atomic():
        as_of = timezone.now()
        ids = _lock_for_request(customer_ids)
        _require_erase_permission(actor, ids)
        held_ids = set(
            Customer.objects.filter(pk__in=ids).filter(selectors.held_q(as_of)).values_list("pk", flat=True)
        )
        predicate = Customer.objects.exclude(selectors.held_q(as_of))
        if scope == Scope.CUSTOMERS and action in (Action.ANONYMISE, Action.PSEUDONYMISE):
            predicate = predicate.exclude(status=Customer.Status.ANONYMISED)
        out = act(
            ids=[i for i in ids if i not in held_ids],
            scope=scope,
            action=action,
            predicate=predicate,
            as_of=as_of,
            reason=reason,
            actor=actor,
            policy=policy,
            run=run,
        )
        out.held = sorted(held_ids)
    return out


# The whole-customer actions of the request path: one call each, differing only by the action. Each erases,
# anonymises or pseudonymises the customers (one transaction: each customer whole or not at all, a tombstone
# per customer); a customer under a legal hold is left untouched and listed in the outcome's `held`.
# customer_erase: their row, events and other linked personal data go; purchases survive unlinked (tax
# records, 法人税法).
customer_erase = functools.partial(_request_path, scope=Scope.CUSTOMERS, action=Action.ERASE)
# customer_anonymise: identifiers removed, birth date → age band, address → prefecture, purchases and
# events kept but unlinked, status "anonymised".
customer_anonymise = functools.partial(_request_path, scope=Scope.CUSTOMERS, action=Action.ANONYMISE)
# customer_pseudonymise (仮名加工, APPI Art. 41): direct identifiers removed, links kept under the internal
# id.
customer_pseudonymise = functools.partial(_request_path, scope=Scope.CUSTOMERS, action=Action.PSEUDONYMISE)


def customer_category_erase(
    *,
    customer_ids: Iterable[int],
    scope: str,
    reason: str,
    actor: User | None,
    policy: RetentionPolicy | None = None,
    run: RetentionRun | None = None,
) -> Outcome:
    """Erase one category of the customers' data (marketing preferences, behavioural events), e.g. after the
    person objects to direct marketing (GDPR Art. 21(3)) or withdraws consent."""
    if scope not in (Scope.MARKETING, Scope.BEHAVIOURAL):
        raise RetentionError("カテゴリ消去の対象はマーケティング設定または行動データです。")
    return _request_path(
        customer_ids=customer_ids,
        scope=scope,
        action=Action.ERASE,
        reason=reason,
        actor=actor,
        policy=policy,
        run=run,
    )
