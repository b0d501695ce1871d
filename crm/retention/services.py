"""Writes of the retention engine: the one erasure path, legal holds, runs and tombstones.

`customer_erase` / `customer_anonymise` / `customer_pseudonymise` / `customer_category_erase` are the only
code that erases or anonymises a customer: retention runs call them batch by batch and the request desk
(開示等請求: 利用停止・消去, APPI Art. 35; GDPR Art. 17) calls them for one person. Each call:

- works on a list of ids already locked (`FOR UPDATE`) in the caller's transaction;
- re-checks the retention predicate (or, for the request desk, "not under a legal hold") inside the very
  statement that acts, so a hold placed or an activity recorded after the ids were picked still wins;
- acts with set-based SQL (auditlog's signals do not see it), then writes tombstones and one summary audit
  entry, all in the caller's transaction: a person is erased whole or not at all.

What anonymisation removes or generalises is read from the classification registry (crm.classification).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import connection, models, transaction
from django.db.models import Max, Min, QuerySet
from django.db.models.deletion import get_candidate_relations_to_delete
from django.utils import timezone

from crm.classification import REDACTED, REGISTRY, DataClass
from crm.crypto import DecryptionError
from crm.models import AuditEntry, Customer, CustomerEvent
from crm.retention import participants, rules, selectors
from crm.retention.models import LegalHold, RetentionPolicy, RetentionRun, RetentionRunSlice, Tombstone

if TYPE_CHECKING:
    import datetime as dt

    from django.contrib.auth.models import AbstractBaseUser

log = logging.getLogger(__name__)

Scope = RetentionPolicy.Scope
Action = RetentionPolicy.Action

# Advisory-lock namespace of the retention engine (first int of the two-int form); second: the policy id.
RETENTION_LOCK_NS = 0x5245_5430  # "RET0"
# Retention categories the law makes us keep even after erasure (法人税法, 会社法 432(2)): kept, unlinked.
STATUTORY_CATEGORIES = frozenset({"tax_records"})
CLEARED_CLASSES = frozenset({DataClass.DIRECT, DataClass.QUASI, DataClass.SPECIAL_CARE, DataClass.DERIVED})


class RetentionError(RuntimeError):
    """A retention operation cannot start; the message is Japanese and holds no personal data."""


class ErasePermissionDenied(RetentionError):
    """The acting user may not erase (or anonymise) every customer of the call; nothing was done."""


class RetentionRunActive(RetentionError):
    """A run of this policy is already in progress (two runs of one policy never overlap)."""


@dataclasses.dataclass
class Outcome:
    """What one call of the erasure path did. Ids only, never values."""

    acted: list[int] = dataclasses.field(default_factory=list)
    held: list[int] = dataclasses.field(default_factory=list)
    failures: Counter[str] = dataclasses.field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


# --- keys and tombstones ------------------------------------------------------------------------------


def tombstone_key() -> bytes:
    """Key of the tombstone hashes: RETENTION_TOMBSTONE_KEY, else a sub-key derived from BLIND_INDEX_KEY.

    Derived with its own label so a tombstone hash never equals a blind index. Restoring a backup needs the
    same key: rotating BLIND_INDEX_KEY without setting RETENTION_TOMBSTONE_KEY to the old sub-key would stop
    re-application from recognising anybody.
    """
    own = getattr(settings, "RETENTION_TOMBSTONE_KEY", "")
    if own:
        return own.encode()
    return hmac.new(settings.BLIND_INDEX_KEY.encode(), b"retention-tombstone-v1", hashlib.sha256).digest()


def _tombstones_write(
    ids: Iterable[int],
    *,
    scope: str,
    action: str,
    reason: str,
    policy: RetentionPolicy | None,
    run: RetentionRun | None,
    at: dt.datetime,
) -> None:
    key = tombstone_key()
    hashes = [rules.subject_hash(key, cid) for cid in ids]
    # One set-based INSERT (no model instances: this runs for every erased customer); a subject already
    # proven for this scope and action (a re-delivered batch, a re-application) is left as it was.
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO crm_tombstone "
            "(subject_hash, scope, action, policy_id, run_id, reason, performed_at) "
            "SELECT h, %s, %s, %s, %s, %s, %s FROM unnest(%s::text[]) AS h "
            "ON CONFLICT (subject_hash, scope, action) DO NOTHING",
            [scope, action, policy.pk if policy else None, run.pk if run else None, reason[:64], at, hashes],
        )


# --- SQL helpers ---------------------------------------------------------------------------------------


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _clear_sql(field: models.Field[Any, Any]) -> str:
    """SQL value that empties `field`: NULL where allowed, else the empty value of its type."""
    if field.null:
        return "NULL"
    if isinstance(field, models.JSONField):
        return "'{}'::jsonb"
    return "''"


def _predicate_sql(predicate: QuerySet[Customer]) -> tuple[str, tuple[Any, ...]]:
    sql, params = predicate.values("pk").query.sql_with_params()
    return sql, tuple(params)


def _fields_to_clear(
    label: str, classes: frozenset[str], *, keep_categories: frozenset[str] = frozenset()
) -> list[models.Field[Any, Any]]:
    from django.apps import apps

    model = apps.get_model(label)
    out = []
    for name, spec in REGISTRY.models.get(label, {}).items():
        if spec.data_class in classes and spec.retention not in keep_categories:
            out.append(model._meta.get_field(name))
    return out


def _anonymise_fields() -> list[models.Field[Any, Any]]:
    """Customer columns anonymisation empties: every identifier (direct, quasi, special-care, blind index)
    and free-text or free-form attributes, which can hold anything. Structured attributes (prefecture,
    gender) stay for analytics; birth date and address leave a generalised trace (age band, prefecture)."""
    label = Customer._meta.label
    fields = _fields_to_clear(label, CLEARED_CLASSES)
    for name in REGISTRY.fields_of(label, DataClass.ATTRIBUTE):
        field = Customer._meta.get_field(name)
        if isinstance(field, (models.TextField, models.JSONField)):
            fields.append(field)
    return fields


def _pseudonymise_fields() -> list[models.Field[Any, Any]]:
    """仮名加工情報 (APPI Art. 41; 規則31): identifying descriptions and their blind indexes go; the record
    stays linked to its purchases and events under its internal id."""
    return _fields_to_clear(Customer._meta.label, frozenset({DataClass.DIRECT, DataClass.DERIVED}))


def _relations_to(model: type[models.Model]) -> list[models.ForeignObjectRel]:
    """Foreign keys pointing at `model` that a deletion must follow — hidden ones (related_name="+")
    included, exactly as Django's own deletion collector sees them."""
    return [
        rel
        for rel in get_candidate_relations_to_delete(model._meta)
        if rel.field.concrete and rel.on_delete is not models.DO_NOTHING
    ]


def _reverse_relations() -> list[models.ForeignObjectRel]:
    return _relations_to(Customer)


def _delete_rows(model: type[models.Model], column: str, ids: list[int]) -> None:
    """Delete rows of `model` whose `column` is in `ids`, following CASCADE set-based (no rows in Python)."""
    deps = _relations_to(model)
    table = _q(model._meta.db_table)
    with connection.cursor() as cur:
        if not deps:
            cur.execute(f"DELETE FROM {table} WHERE {_q(column)} = ANY(%s)", [ids])  # noqa: S608
            return
        cur.execute(
            f"DELETE FROM {table} WHERE {_q(column)} = ANY(%s) RETURNING {_q(model._meta.pk.column)}",  # noqa: S608
            [ids],
        )
        child_ids = [row[0] for row in cur.fetchall()]
    for rel in deps:
        _follow(rel, child_ids, unlink=False)


def _unlink_rows(model: type[models.Model], column: str, ids: list[int], *, free_text: bool = False) -> None:
    """Set the link to NULL and empty the identifiers the related row itself holds (e.g. an event's visitor
    id), except statutory records (tax_records) that the law asks us to keep as they are.

    `free_text` (the customer is erased, not anonymised): free-form attributes too (a legal hold's note),
    which can name the person whatever the form asks; structured attributes stay."""
    label = model._meta.label
    sets = [f"{_q(column)} = NULL"]
    fields = _fields_to_clear(label, CLEARED_CLASSES, keep_categories=STATUTORY_CATEGORIES)
    if free_text:
        fields += [
            f
            for f in _fields_to_clear(
                label, frozenset({DataClass.ATTRIBUTE}), keep_categories=STATUTORY_CATEGORIES
            )
            if isinstance(f, (models.TextField, models.JSONField))
        ]
    for field in fields:
        if field.column != column:
            sets.append(f"{_q(field.column)} = {_clear_sql(field)}")
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {_q(model._meta.db_table)} SET {', '.join(sets)} WHERE {_q(column)} = ANY(%s)",  # noqa: S608
            [ids],
        )


def _follow(rel: models.ForeignObjectRel, ids: list[int], *, unlink: bool) -> None:
    if not ids:
        return
    model, column = rel.related_model, rel.field.column
    if rel.on_delete is models.SET_NULL or (unlink and rel.field.null):
        _unlink_rows(model, column, ids, free_text=not unlink)
    elif rel.on_delete is models.CASCADE:
        _delete_rows(model, column, ids)


def _protected_sql() -> tuple[str, list[str]]:
    """NOT EXISTS clauses for relations that forbid deleting the customer (PROTECT/RESTRICT/SET_DEFAULT …)."""
    clauses, names = [], []
    for rel in _reverse_relations():
        if rel.on_delete in (models.CASCADE, models.SET_NULL):
            continue
        clauses.append(
            f"NOT EXISTS (SELECT 1 FROM {_q(rel.related_model._meta.db_table)} p "  # noqa: S608
            f"WHERE p.{_q(rel.field.column)} = c.id)"
        )
        names.append(rel.related_model._meta.label)
    return " AND ".join(clauses), names


def _audit_batch(
    *,
    action: str,
    scope: str,
    ids: list[int],
    reason: str,
    actor: AbstractBaseUser | None,
    policy: RetentionPolicy | None,
    run: RetentionRun | None,
    cleared: list[str],
) -> None:
    """One summary audit entry per batch: auditlog's signals do not see set-based SQL.

    Signed on insert like every entry and chained by the seal after the batch commits (crm.audit): no chain
    lock is held by the batch transaction.
    Holds ids, field names and codes only; values of cleared fields are shown as [redacted].
    """
    single = len(ids) == 1
    AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(Customer),
        object_pk=str(ids[0]) if single else f"retention-batch:{ids[0]}-{ids[-1]}",
        object_id=ids[0] if single else None,
        object_repr=f"顧客 #{ids[0]}" if single else f"顧客 {len(ids)}件（#{ids[0]}〜#{ids[-1]}）",
        action=AuditEntry.Action.DELETE
        if action == Action.ERASE and scope == Scope.CUSTOMERS
        else AuditEntry.Action.UPDATE,
        changes={name: [REDACTED, ""] for name in cleared},
        actor=actor,
        additional_data={
            "retention": {
                "action": action,
                "scope": scope,
                "reason": reason,
                "policy": policy.pk if policy else None,
                "run": run.pk if run else None,
                "count": len(ids),
                "customer_ids": ids,
            }
        },
    )


# --- the erasure path ----------------------------------------------------------------------------------


def _act(
    *,
    ids: list[int],
    scope: str,
    action: str,
    predicate: QuerySet[Customer],
    as_of: dt.datetime,
    reason: str,
    actor: AbstractBaseUser | None,
    policy: RetentionPolicy | None,
    run: RetentionRun | None,
    trigger: str = "",
    days: int = 0,
) -> Outcome:
    """Apply `action` on `scope` to the locked `ids` that still satisfy `predicate`; inside a transaction."""
    out = Outcome()
    if not ids:
        return out
    # The predicate narrowed to these ids: the planner checks it row by row through the primary key instead
    # of evaluating it over the whole table once per batch.
    pred_sql, pred_params = _predicate_sql(predicate.filter(pk__in=ids))
    now = timezone.now()
    cleared: list[str] = []
    with connection.cursor() as cur:
        if scope == Scope.CUSTOMERS and action == Action.ERASE:
            protected, names = _protected_sql()
            extra = f" AND {protected}" if protected else ""
            cur.execute(
                f"DELETE FROM crm_customer c WHERE c.id = ANY(%s) AND c.id IN ({pred_sql}){extra} "  # noqa: S608
                "RETURNING c.id",
                [ids, *pred_params],
            )
            out.acted = sorted(r[0] for r in cur.fetchall())
            if protected and len(out.acted) < len(ids):
                # Which of the others a protecting relation kept (the rest no longer matched the predicate).
                rest = sorted(set(ids) - set(out.acted))
                cur.execute(
                    f"SELECT count(*) FROM crm_customer c WHERE c.id = ANY(%s) "  # noqa: S608
                    f"AND c.id IN ({pred_sql}) AND NOT ({protected})",
                    [rest, *pred_params],
                )
                n = cur.fetchone()[0]
                if n:
                    out.failures["protected_by:" + ",".join(names)] += n
            _participants_erase(out.acted, action=action, reason=reason, actor=actor)
            for rel in _reverse_relations():
                _follow(rel, out.acted, unlink=False)
        elif scope == Scope.CUSTOMERS:
            fields = _anonymise_fields() if action == Action.ANONYMISE else _pseudonymise_fields()
            cleared = [f.name for f in fields]
            rows = _generalisation_inputs(ids)
            on = as_of.astimezone(rules.JST).date()
            v_ids = [r[0] for r in rows]
            v_band = [rules.age_band(r[1], on) for r in rows]
            v_pref = [rules.prefecture_of(r[2], r[3]) for r in rows]
            sets = [
                f"{_q(f.column)} = {_clear_sql(f)}"
                for f in fields
                if f.name not in ("age_band", "prefecture")
            ]
            sets += ["age_band = v.age_band", "prefecture = v.prefecture", "updated_at = %s"]
            params: list[Any] = [now]
            if action == Action.ANONYMISE:
                sets.append("status = %s")
                params.append(Customer.Status.ANONYMISED)
            cur.execute(
                f"UPDATE crm_customer c SET {', '.join(sets)} "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS v(id, age_band, prefecture) "
                f"WHERE c.id = v.id AND c.id IN ({pred_sql}) RETURNING c.id",
                [*params, v_ids, v_band, v_pref, *pred_params],
            )
            out.acted = sorted(r[0] for r in cur.fetchall())
            if action == Action.ANONYMISE:
                _participants_erase(out.acted, action=action, reason=reason, actor=actor)
                # Purchases and events stay for analytics, no longer linked to a person.
                for rel in _reverse_relations():
                    _follow(rel, out.acted, unlink=True)
        elif scope == Scope.MARKETING:
            fields = [Customer._meta.get_field(n) for n in selectors.marketing_fields()]
            cleared = [f.name for f in fields]
            sets = [f"{_q(f.column)} = {_clear_sql(f)}" for f in fields] + ["updated_at = %s"]
            cur.execute(
                f"UPDATE crm_customer c SET {', '.join(sets)} "  # noqa: S608
                f"WHERE c.id = ANY(%s) AND c.id IN ({pred_sql}) RETURNING c.id",
                [now, ids, *pred_params],
            )
            out.acted = sorted(r[0] for r in cur.fetchall())
        elif scope == Scope.BEHAVIOURAL:
            age = ""
            params = [ids, *pred_params]
            if trigger == RetentionPolicy.Trigger.RECORD_AGE:
                age = " AND e.occurred_at < %s"
                params.append(rules.trigger_cutoff(as_of, days))
            ev = _q(CustomerEvent._meta.db_table)
            if action == Action.ERASE:
                stmt = (
                    f"DELETE FROM {ev} e WHERE e.customer_id = ANY(%s) "  # noqa: S608
                    f"AND e.customer_id IN ({pred_sql}){age} RETURNING e.customer_id"
                )
            else:
                # The CTE keeps the old link so the statement can say whose events it unlinked.
                stmt = (
                    f"WITH old AS (SELECT e.id, e.customer_id FROM {ev} e "  # noqa: S608
                    f"WHERE e.customer_id = ANY(%s) AND e.customer_id IN ({pred_sql}){age} FOR UPDATE) "
                    f"UPDATE {ev} u SET customer_id = NULL, visitor_id = '' FROM old WHERE u.id = old.id "
                    "RETURNING old.customer_id"
                )
            cur.execute(stmt, params)
            out.acted = sorted({r[0] for r in cur.fetchall() if r[0] is not None})
            if trigger != RetentionPolicy.Trigger.RECORD_AGE and out.acted:
                # The device id is a behavioural identifier of the person (registry: retention "behavioural").
                fields = [
                    Customer._meta.get_field(n)
                    for n, s in REGISTRY.models[Customer._meta.label].items()
                    if s.retention == "behavioural"
                ]
                cleared = [f.name for f in fields]
                if fields:
                    sets = ", ".join(f"{_q(f.column)} = {_clear_sql(f)}" for f in fields)
                    cur.execute(f"UPDATE crm_customer SET {sets} WHERE id = ANY(%s)", [out.acted])  # noqa: S608
        else:
            raise RetentionError(f"対象「{scope}」の処理は未導入です。")
    if out.acted:
        _tombstones_write(
            out.acted, scope=scope, action=action, reason=reason, policy=policy, run=run, at=now
        )
        _audit_batch(
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


def _participants_erase(ids: list[int], *, action: str, reason: str, actor: AbstractBaseUser | None) -> None:
    """Let every registered participant (crm.retention.participants; e.g. the consent ledger's evidence)
    erase what it holds about `ids`, in this transaction and before the linked rows are deleted/unlinked."""
    if not ids:
        return
    for participant in participants.erasure_participants():
        participant.step(customer_ids=ids, action=action, reason=reason, actor=actor)


def visitor_events_erase(*, visitor_ids: Iterable[str], action: str) -> int:
    """Behavioural events recorded for an anonymous visitor (no customer yet) under cookie ids the caller
    has linked to a person being erased or anonymised: erasure deletes them, anonymisation keeps them for
    analytics without the cookie id (as it does with the person's own events). Called by the erasure
    participant that knows the links (the consent app's visitor links), inside the erasure's transaction.
    Returns the number of events changed."""
    ids = sorted({v for v in visitor_ids if v})
    if not ids:
        return 0
    ev = _q(CustomerEvent._meta.db_table)
    with connection.cursor() as cur:
        if action == Action.ERASE:
            cur.execute(f"DELETE FROM {ev} WHERE customer_id IS NULL AND visitor_id = ANY(%s)", [ids])  # noqa: S608
        else:
            cur.execute(
                f"UPDATE {ev} SET visitor_id = '' WHERE customer_id IS NULL AND visitor_id = ANY(%s)",  # noqa: S608
                [ids],
            )
        return cur.rowcount


def _generalisation_inputs(ids: list[int]) -> list[tuple[int, Any, str, str]]:
    """(id, birth date, address, prefecture) decrypted in Python: the only values anonymisation reads,
    to leave an age band and a prefecture. A value no key opens is treated as unknown (it is wiped anyway)."""
    with connection.cursor() as cur:
        cur.execute("SELECT id, birth_date, address, prefecture FROM crm_customer WHERE id = ANY(%s)", [ids])
        raw = cur.fetchall()
    bd_field = Customer._meta.get_field("birth_date")
    ad_field = Customer._meta.get_field("address")
    out = []
    for cid, bd, addr, pref in raw:
        try:
            birth = bd_field.from_db_value(bd, None, connection)
        except DecryptionError:
            birth = None
        try:
            address = ad_field.from_db_value(addr, None, connection) or ""
        except DecryptionError:
            address = ""
        out.append((cid, birth, address, pref or ""))
    return out


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


def _require_erase_permission(actor: AbstractBaseUser | None, ids: list[int]) -> None:
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
    actor: AbstractBaseUser | None,
    policy: RetentionPolicy | None,
    run: RetentionRun | None,
) -> Outcome:
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
        out = _act(
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


def customer_erase(
    *,
    customer_ids: Iterable[int],
    reason: str,
    actor: AbstractBaseUser | None,
    policy: RetentionPolicy | None = None,
    run: RetentionRun | None = None,
) -> Outcome:
    """Erase the customers (their row, events and other linked personal data); purchases survive unlinked
    (tax records, 法人税法). A customer under a legal hold is left untouched and listed in `held`.
    One transaction: each customer is erased whole or not at all. Writes a tombstone per customer."""
    return _request_path(
        customer_ids=customer_ids,
        scope=Scope.CUSTOMERS,
        action=Action.ERASE,
        reason=reason,
        actor=actor,
        policy=policy,
        run=run,
    )


def customer_anonymise(
    *,
    customer_ids: Iterable[int],
    reason: str,
    actor: AbstractBaseUser | None,
    policy: RetentionPolicy | None = None,
    run: RetentionRun | None = None,
) -> Outcome:
    """Anonymise the customers: identifiers removed, birth date → age band, address → prefecture, purchases
    and events kept but unlinked, status "anonymised". Held customers are left untouched."""
    return _request_path(
        customer_ids=customer_ids,
        scope=Scope.CUSTOMERS,
        action=Action.ANONYMISE,
        reason=reason,
        actor=actor,
        policy=policy,
        run=run,
    )


def customer_pseudonymise(
    *,
    customer_ids: Iterable[int],
    reason: str,
    actor: AbstractBaseUser | None,
    policy: RetentionPolicy | None = None,
    run: RetentionRun | None = None,
) -> Outcome:
    """Pseudonymise (仮名加工, APPI Art. 41): direct identifiers removed, links kept under the internal id."""
    return _request_path(
        customer_ids=customer_ids,
        scope=Scope.CUSTOMERS,
        action=Action.PSEUDONYMISE,
        reason=reason,
        actor=actor,
        policy=policy,
        run=run,
    )


def customer_category_erase(
    *,
    customer_ids: Iterable[int],
    scope: str,
    reason: str,
    actor: AbstractBaseUser | None,
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


# --- legal holds ---------------------------------------------------------------------------------------


def legal_hold_place(
    *,
    customer_ids: Iterable[int],
    reason: str,
    placed_by: AbstractBaseUser,
    until: dt.datetime | None = None,
    reference: str = "",
    note: str = "",
) -> list[LegalHold]:
    """Place a hold on each customer, all or none.

    The customer rows are locked first (FOR UPDATE, in id order): a batch that already holds one makes us
    wait and then find the customer gone (refused, nothing written); a batch that comes later skips the
    locked row (SKIP LOCKED) and, once we commit, sees the hold in its predicate. A hold and an erasure
    never cross unseen (the foreign key alone would only be checked at commit: it is deferred)."""
    if reason not in LegalHold.Reason.values:
        raise RetentionError("保存義務の理由を選択してください。")
    if until is not None and until <= timezone.now():
        raise RetentionError("保存期限は未来の日時を指定してください。")
    ids = sorted({int(i) for i in customer_ids})
    if not ids:
        raise RetentionError("対象の顧客を指定してください。")
    with transaction.atomic():
        existing = set(
            Customer.objects.filter(pk__in=ids)
            .order_by("pk")
            .select_for_update(of=("self",))
            .values_list("pk", flat=True)
        )
        missing = [i for i in ids if i not in existing]
        if missing:
            raise RetentionError(
                f"存在しない顧客が含まれています（{len(missing)}件）。何も設定していません。"
            )
        holds = LegalHold.objects.bulk_create(
            [
                LegalHold(
                    customer_id=i,
                    reason=reason,
                    placed_by=placed_by,
                    until=until,
                    reference=reference,
                    note=note,
                )
                for i in ids
            ]
        )
        _audit_hold(holds, placed_by, "placed")
    return holds


def legal_hold_release(*, holds: Iterable[LegalHold], released_by: AbstractBaseUser) -> int:
    """End holds now. A released hold stops protecting the customer from the next run."""
    with transaction.atomic():
        pks = [h.pk for h in holds]
        locked = list(LegalHold.objects.filter(pk__in=pks, released_at__isnull=True).select_for_update())
        now = timezone.now()
        for hold in locked:
            hold.released_at = now
            hold.released_by = released_by
        LegalHold.objects.bulk_update(locked, ["released_at", "released_by"])
        _audit_hold(locked, released_by, "released")
    return len(locked)


def _audit_hold(holds: list[LegalHold], actor: AbstractBaseUser | None, what: str) -> None:
    if not holds:
        return
    AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(LegalHold),
        object_pk=str(holds[0].pk) if len(holds) == 1 else f"legal-hold-batch:{holds[0].pk}-{holds[-1].pk}",
        object_repr=f"リーガルホールド {len(holds)}件",
        action=AuditEntry.Action.CREATE if what in ("placed", "restored") else AuditEntry.Action.UPDATE,
        changes={},
        actor=actor,
        additional_data={
            "legal_hold": {
                "event": what,
                "reason": holds[0].reason,
                "holds": [h.pk for h in holds],
                "customer_ids": [h.customer_id for h in holds],
            }
        },
    )


# --- runs ----------------------------------------------------------------------------------------------


def _slices_wanted() -> int:
    return int(getattr(settings, "RETENTION_RUN_SLICES", 4))


def retention_run_start(
    *,
    policy: RetentionPolicy,
    actor: AbstractBaseUser | None = None,
    as_of: dt.datetime | None = None,
    enqueue: bool = True,
) -> RetentionRun:
    """Start a run of `policy`: freeze its settings, split the customer ids into slices and (after commit)
    start one chain of batch tasks per slice. Raises RetentionRunActive if a run of it is in progress."""
    as_of = as_of or timezone.now()
    with transaction.atomic():
        with connection.cursor() as cur:
            # Serialises concurrent starts of one policy (beat and an admin, two beats …); the partial unique
            # constraint on running runs is the backstop.
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [RETENTION_LOCK_NS, policy.pk])
        if RetentionRun.objects.filter(policy=policy, status=RetentionRun.Status.RUNNING).exists():
            raise RetentionRunActive(f"ポリシー「{policy.name}」は実行中です。終了後に再度実行してください。")
        run = RetentionRun.objects.create(
            policy=policy,
            as_of=as_of,
            started_by=actor,
            action=policy.action,
            scope=policy.scope,
            trigger=policy.trigger,
            days=policy.days,
            consent_purpose=policy.consent_purpose,
            batch_size=policy.batch_size,
        )
        if policy.scope not in selectors.CUSTOMER_SCOPES:
            return _run_close(run, RetentionRun.Status.UNSUPPORTED, "この対象の処理は未導入です。")
        if policy.trigger == RetentionPolicy.Trigger.CONSENT_WITHDRAWN:
            try:
                selectors.consent_withdrawn_customer_ids(policy.consent_purpose, policy.days, as_of)
            except selectors.ConsentUnavailable as exc:
                return _run_close(run, RetentionRun.Status.FAILED, str(exc))
        bounds = Customer.objects.aggregate(lo=Min("pk"), hi=Max("pk"))
        ranges = rules.id_slices((bounds["lo"] or 1) - 1, bounds["hi"] or 0, _slices_wanted())
        slices = RetentionRunSlice.objects.bulk_create(
            [RetentionRunSlice(run=run, lo=lo, hi=hi, cursor=lo) for lo, hi in ranges]
        )
        if not slices:
            return _run_close(run, RetentionRun.Status.COMPLETED, "")
        if enqueue:
            transaction.on_commit(lambda: _enqueue_slices([(s.pk, s.cursor) for s in slices]))
    log.info("retention run %s of policy %s started with %d slices", run.pk, policy.pk, len(slices))
    return run


def _enqueue_slices(items: list[tuple[int, int]]) -> None:
    from crm.retention.tasks import retention_run_batch

    for slice_id, cursor in items:
        retention_run_batch.delay(slice_id, cursor)


def _run_close(run: RetentionRun, status: str, note: str) -> RetentionRun:
    counts = run.live_counts()
    failures: Counter[str] = Counter()
    for f in run.slices.values_list("failures", flat=True):
        failures.update(f or {})
    for name, value in counts.items():
        setattr(run, name, value)
    run.failures = dict(failures)
    run.status = status
    run.note = note or run.note
    run.finished_at = timezone.now()
    run.save()
    return run


def retention_slice_advance(*, slice_id: int, expected_cursor: int, enqueue: bool = True) -> int | None:
    """Process the next batch of a slice, in one transaction. Returns the new cursor when more is left.

    Safe when a message is delivered twice or after a crash: the slice row is locked and its cursor must be
    the one the message carries; otherwise the batch was already done and this call does nothing.
    """
    with transaction.atomic():
        with connection.cursor() as cur:
            # Asynchronous commit is safe here and only here: the batch and the cursor that records it commit
            # together, so a crash that loses the last commits loses both, and the batch is simply done again.
            cur.execute("SET LOCAL synchronous_commit TO OFF")
        sl = (
            RetentionRunSlice.objects.select_for_update(of=("self",))
            .select_related("run")
            .filter(pk=slice_id)
            .first()
        )
        if (
            sl is None
            or sl.done
            or sl.cursor != expected_cursor
            or sl.run.status != RetentionRun.Status.RUNNING
        ):
            return None
        run = sl.run
        policy = run.frozen_policy()
        as_of = run.as_of
        in_range = Customer.objects.filter(pk__gt=sl.cursor, pk__lte=sl.hi)
        # Keyset walk: the window ends at the batch_size-th due customer (or at the slice end).
        due_ids = list(
            in_range.filter(selectors.due_q(policy, as_of))
            .order_by("pk")
            .values_list("pk", flat=True)[: policy.batch_size]
        )
        end = due_ids[-1] if len(due_ids) == policy.batch_size else sl.hi
        window = Customer.objects.filter(pk__gt=sl.cursor, pk__lte=end)
        examined = window.count()
        n_held = selectors.held(policy, as_of, window).count() if due_ids else 0
        todo = selectors.actionable(policy, as_of, window)
        # SKIP LOCKED: a row another transaction holds (a request-desk erasure, a hold being placed) is left
        # to that transaction; the next run evaluates it again.
        locked = list(
            todo.select_for_update(skip_locked=True, of=("self",)).order_by("pk").values_list("pk", flat=True)
        )
        out = _act(
            ids=locked,
            scope=policy.scope,
            action=policy.action,
            predicate=selectors.actionable(policy, as_of),
            as_of=as_of,
            reason=f"policy:{policy.pk}",
            actor=run.started_by,
            policy=policy,
            run=run,
            trigger=policy.trigger,
            days=policy.days,
        )
        skipped_locked = len(due_ids) - n_held - len(locked) if due_ids else 0
        sl.examined += examined
        sl.skipped_hold += n_held
        counter = {
            Action.ERASE: "erased",
            Action.ANONYMISE: "anonymised",
            Action.PSEUDONYMISE: "pseudonymised",
        }[policy.action]
        setattr(sl, counter, getattr(sl, counter) + len(out.acted))
        failures = Counter(sl.failures or {})
        failures.update(out.failures)
        if skipped_locked > 0:
            failures["skipped_locked"] += skipped_locked
        sl.failed += out.failed
        sl.failures = dict(failures)
        sl.cursor = end
        sl.done = end >= sl.hi
        sl.batches += 1
        sl.heartbeat_at = timezone.now()
        sl.save()
        if sl.done:
            run = RetentionRun.objects.select_for_update().get(pk=run.pk)
            if run.status == RetentionRun.Status.RUNNING and not run.slices.filter(done=False).exists():
                _run_close(run, RetentionRun.Status.COMPLETED, "")
            return None
        if enqueue:
            transaction.on_commit(lambda: _enqueue_slices([(slice_id, end)]))
        return end


def retention_slice_fail(*, slice_id: int, error: BaseException) -> None:
    """Record that a slice gave up after its retries, and fail the run (codes only: no values)."""
    code = type(error).__name__
    sqlstate = getattr(getattr(error, "__cause__", None), "sqlstate", None) or getattr(
        error, "sqlstate", None
    )
    with transaction.atomic():
        sl = RetentionRunSlice.objects.select_for_update().select_related("run").filter(pk=slice_id).first()
        if sl is None or sl.done:
            return
        sl.error = f"{code} {sqlstate or ''}".strip()
        sl.save(update_fields=["error"])
        run = RetentionRun.objects.select_for_update().get(pk=sl.run_id)
        if run.status == RetentionRun.Status.RUNNING:
            _run_close(run, RetentionRun.Status.FAILED, f"区間 {sl.lo}–{sl.hi} が失敗しました: {sl.error}")


def retention_run_to_completion(*, run: RetentionRun) -> RetentionRun:
    """Walk every slice of a run in this process (tests, benchmarks, and `manage.py` use; no broker)."""
    for sl in list(run.slices.filter(done=False)):
        cursor: int | None = sl.cursor
        while cursor is not None:
            cursor = retention_slice_advance(slice_id=sl.pk, expected_cursor=cursor, enqueue=False)
    run.refresh_from_db()
    return run


def heartbeat_seconds() -> int:
    """RETENTION_HEARTBEAT_SECONDS: a slice whose last batch is older than this is considered stalled."""
    return int(getattr(settings, "RETENTION_HEARTBEAT_SECONDS", 30))


def retention_resume_stalled(*, stale_after_seconds: int | None = None) -> int:
    """Re-enqueue the batch of every unfinished slice whose heartbeat is older than `stale_after_seconds`
    (default RETENTION_HEARTBEAT_SECONDS); inside the caller's transaction, enqueued after commit.

    Covers a worker killed between a batch's commit and the enqueue of the next one, and a message left
    unacknowledged by a dead worker until the broker's visibility timeout. Each slice is claimed by one
    conditional UPDATE that moves its heartbeat to now: of two watchdogs at once (a beat tick and a
    restarting worker) exactly one wins, and the next claim waits another full interval. A slice whose batch
    is running right now holds its row lock and is skipped (SKIP LOCKED): it is not stalled. A duplicate
    message is harmless anyway (the cursor check drops it).
    """
    stale = heartbeat_seconds() if stale_after_seconds is None else stale_after_seconds
    now = timezone.now()
    limit = now - datetime.timedelta(seconds=stale)
    table = _q(RetentionRunSlice._meta.db_table)
    runs = _q(RetentionRun._meta.db_table)
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {table} s SET heartbeat_at = %s "  # noqa: S608
            f"WHERE s.id IN (SELECT x.id FROM {table} x JOIN {runs} r ON r.id = x.run_id "
            "WHERE NOT x.done AND r.status = %s AND x.heartbeat_at <= %s "
            "FOR UPDATE OF x SKIP LOCKED) "
            "AND NOT s.done AND s.heartbeat_at <= %s RETURNING s.id, s.cursor",
            [now, RetentionRun.Status.RUNNING, limit, limit],
        )
        items = sorted((int(i), int(c)) for i, c in cur.fetchall())
    if items:
        transaction.on_commit(lambda: _enqueue_slices(items))
    return len(items)


def retention_run_due_policies(*, as_of: dt.datetime | None = None) -> list[RetentionRun]:
    """Start a run of every enabled policy that is not already running (Celery beat)."""
    runs = []
    for policy in RetentionPolicy.objects.filter(enabled=True).order_by("pk"):
        try:
            runs.append(retention_run_start(policy=policy, as_of=as_of))
        except RetentionRunActive:
            log.info("retention policy %s still running; not started again", policy.pk)
    return runs


# --- tombstones after a restore ------------------------------------------------------------------------


def tombstones_export(*, stream: Any) -> int:
    """Write every tombstone as one JSON line (kept apart from the database backups, for re-application)."""
    n = 0
    for t in (
        Tombstone.objects.order_by("pk")
        .values("subject_hash", "scope", "action", "policy_id", "reason", "performed_at")
        .iterator(chunk_size=5000)
    ):
        t["performed_at"] = t["performed_at"].isoformat()
        stream.write(json.dumps(t, ensure_ascii=False) + "\n")
        n += 1
    return n


def tombstones_import(*, lines: Iterable[str]) -> int:
    """Load exported tombstones (ignoring ones already present, and the legal-hold lines of the same file:
    legal_holds_import reads those)."""
    from django.utils.dateparse import parse_datetime

    known_policies = set(RetentionPolicy.objects.values_list("pk", flat=True))
    batch: list[Tombstone] = []
    n = 0
    for line in lines:
        if not line.strip():
            continue
        d = json.loads(line)
        if d.get("kind", "tombstone") != "tombstone":
            continue
        batch.append(
            Tombstone(
                subject_hash=d["subject_hash"],
                scope=d["scope"],
                action=d["action"],
                policy_id=d.get("policy_id") if d.get("policy_id") in known_policies else None,
                reason=d.get("reason", "")[:64],
                performed_at=parse_datetime(d["performed_at"]) or timezone.now(),
            )
        )
        if len(batch) >= 2000:
            n += len(Tombstone.objects.bulk_create(batch, ignore_conflicts=True))
            batch = []
    if batch:
        n += len(Tombstone.objects.bulk_create(batch, ignore_conflicts=True))
    return n


# --- legal holds after a restore --------------------------------------------------------------------------

HOLD_KIND = "legal_hold"
RESTORED_HOLD_NOTE = "バックアップ復元後に証跡ファイルから再設定（元の備考は書き出していません）"


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def legal_holds_export(*, stream: Any) -> int:
    """Write every legal hold that names a customer as one JSON line (`"kind": "legal_hold"`), beside the
    tombstones: a backup restored later must not forget a hold placed after it, or the next run would
    erase what the hold protects. The customer is named by the tombstone key's hash of their id, as in a
    tombstone; the free-text note is not written (it can hold anything). Staff are named by username."""
    key = tombstone_key()
    n = 0
    for h in (
        LegalHold.objects.filter(customer__isnull=False)
        .select_related("placed_by", "released_by")
        .order_by("pk")
        .iterator(chunk_size=2000)
    ):
        row = {
            "kind": HOLD_KIND,
            "subject_hash": rules.subject_hash(key, h.customer_id),
            "reason": h.reason,
            "reference": h.reference,
            "placed_by": h.placed_by.get_username(),
            "placed_at": _iso(h.placed_at),
            "until": _iso(h.until),
            "released_at": _iso(h.released_at),
            "released_by": h.released_by.get_username() if h.released_by else None,
        }
        stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
    return n


def _staff_resolver(actor: AbstractBaseUser | None) -> Any:
    """username → user of the restored database; a user missing there (created after the backup) is
    replaced by `actor`, else by the earliest superuser, so that no hold is dropped for want of a user."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    cache: dict[str, Any] = {}

    def resolve(username: str | None) -> Any:
        if not username:
            return None
        if username not in cache:
            found = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
            if found is None:
                found = actor or user_model.objects.filter(is_superuser=True).order_by("pk").first()
            if found is None:
                raise RetentionError(
                    "保存義務を復元できません: 設定者が見つからず、代わりとなる管理者もいません。"
                )
            cache[username] = found
        return cache[username]

    return resolve


def legal_holds_import(*, lines: Iterable[str], actor: AbstractBaseUser | None = None) -> Counter[str]:
    """After a restore: put back every exported hold the restored database lacks (and the release of one
    released since), before tombstones are re-applied, so that a restore never erases what a hold protects.

    Holds are matched to restored customers by the keyed hash of their id (walking the customers, as
    tombstones_reapply does) and to existing holds by (customer, reason, placed_at): running it twice adds
    nothing. A hold whose customer is not in the restored database is counted as `unmatched` (the person is
    not there to protect). Tombstone lines are ignored here. Returns counts only.
    """
    from django.utils.dateparse import parse_datetime

    wanted: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if not line.strip():
            continue
        d = json.loads(line)
        if d.get("kind") == HOLD_KIND:
            wanted.setdefault(d["subject_hash"], []).append(d)
    counts: Counter[str] = Counter()
    if not wanted:
        return counts
    key = tombstone_key()
    staff = _staff_resolver(actor)
    matched: set[str] = set()
    for ids in _customer_id_batches(5000):
        hits = {rules.subject_hash(key, i): i for i in ids}
        hits = {h: i for h, i in hits.items() if h in wanted}
        if not hits:
            continue
        matched.update(hits)
        with transaction.atomic():
            # As legal_hold_place: the customers are locked so no batch erases one while its hold returns.
            present = set(
                Customer.objects.filter(pk__in=hits.values())
                .order_by("pk")
                .select_for_update(of=("self",))
                .values_list("pk", flat=True)
            )
            created: list[LegalHold] = []
            released: list[LegalHold] = []
            for h, cid in hits.items():
                if cid not in present:
                    continue
                for d in wanted[h]:
                    placed_at = parse_datetime(d["placed_at"])
                    released_at = parse_datetime(d["released_at"]) if d.get("released_at") else None
                    existing = LegalHold.objects.filter(
                        customer_id=cid, reason=d["reason"], placed_at=placed_at
                    ).first()
                    if existing is None:
                        created.append(
                            LegalHold(
                                customer_id=cid,
                                reason=d["reason"],
                                reference=(d.get("reference") or "")[:64],
                                note=RESTORED_HOLD_NOTE,
                                placed_by=staff(d["placed_by"]),
                                placed_at=placed_at,
                                until=parse_datetime(d["until"]) if d.get("until") else None,
                                released_at=released_at,
                                released_by=staff(d.get("released_by")) if released_at else None,
                            )
                        )
                    elif released_at and existing.released_at is None:
                        existing.released_at = released_at
                        existing.released_by = staff(d.get("released_by"))
                        released.append(existing)
                    else:
                        counts["present"] += 1
            LegalHold.objects.bulk_create(created)
            LegalHold.objects.bulk_update(released, ["released_at", "released_by"])
            _audit_hold(created, actor, "restored")
            _audit_hold(released, actor, "release_restored")
            counts["restored"] += len(created)
            counts["release_restored"] += len(released)
    counts["unmatched"] = sum(len(v) for h, v in wanted.items() if h not in matched)
    return +counts


def _customer_id_batches(size: int) -> Iterator[list[int]]:
    last = 0
    while True:
        ids = list(Customer.objects.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            return
        yield ids
        last = ids[-1]


# Order matters when one subject has several tombstones: erasure supersedes the rest.
_REAPPLY_ORDER = [
    (Scope.MARKETING, Action.ERASE),
    (Scope.MARKETING, Action.ANONYMISE),
    (Scope.CUSTOMERS, Action.PSEUDONYMISE),
    (Scope.CUSTOMERS, Action.ANONYMISE),
    (Scope.CUSTOMERS, Action.ERASE),
]


def tombstones_reapply(*, actor: AbstractBaseUser | None = None, batch_size: int = 5000) -> Counter[str]:
    """After a backup is restored: find the customers a tombstone names and apply the same action again.

    Walks the restored customers by id, hashes each id with the tombstone key and looks the hashes up, so no
    list of erased ids is ever kept. Idempotent: what is already done is not done twice. A customer now under
    a legal hold is left untouched and counted as held.
    """
    key = tombstone_key()
    counts: Counter[str] = Counter()
    for ids in _customer_id_batches(batch_size):
        by_hash = {rules.subject_hash(key, i): i for i in ids}
        found: dict[tuple[str, str], set[int]] = {}
        for h, scope, action in Tombstone.objects.filter(subject_hash__in=list(by_hash)).values_list(
            "subject_hash", "scope", "action"
        ):
            found.setdefault((scope, action), set()).add(by_hash[h])
        for scope, action in _REAPPLY_ORDER:
            targets = found.get((scope, action))
            if not targets:
                continue
            if scope == Scope.MARKETING:
                out = customer_category_erase(
                    customer_ids=targets, scope=scope, reason="tombstone_reapply", actor=actor
                )
            else:
                fn = {
                    Action.ERASE: customer_erase,
                    Action.ANONYMISE: customer_anonymise,
                    Action.PSEUDONYMISE: customer_pseudonymise,
                }[action]
                out = fn(customer_ids=targets, reason="tombstone_reapply", actor=actor)
            counts[f"{scope}:{action}"] += len(out.acted)
            counts["held"] += len(out.held)
    return counts
