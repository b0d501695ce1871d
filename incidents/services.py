"""Writes of breach response: every change of an incident, its status, its filings and its response team.

Each service locks the incident through the gate (`restrict(actor, "change")`, SELECT … FOR UPDATE), so an
actor who may not change the incident changes nothing, and two people moving the same incident at once are
served one after the other (the second sees the first's status). Every step leaves a timeline entry (who,
when, what); auditlog records the row changes (incidents.apps).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, Max, Min, Model, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from guardian.shortcuts import assign_perm, remove_perm

from crm.audit.actors import audit_actor
from crm.classification import REGISTRY, DataClass
from crm.crypto import email_index, phone_index
from crm.integrations.models import ApiClient, ApiScope
from crm.models import AuditEntry, Customer
from crm.permissions import scope_kind
from crm.queue import task_enqueue
from crm.retention.models import LegalHold
from crm.retention.services import legal_hold_place, legal_hold_release
from incidents.models import (
    EVENT_FIELDS,
    REPORT_ITEM_FIELDS,
    Incident,
    IncidentAffected,
    IncidentCorrectiveAction,
    IncidentFiling,
    IncidentNotice,
    IncidentScope,
    IncidentScopeKey,
    IncidentTimelineEntry,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User


# A member number as crm's search reads one (crm.selectors); a line of digits only is read as a phone first.
MEMBER_NO = re.compile(r"[A-Za-z0-9\-]{4,20}")
PHONE_LIKE = re.compile(r"[0-9+\-() ]+")


class IncidentError(Exception):
    """A refused incident change; the message is for the user (Japanese, translated)."""


# The facts of an incident a service may set; `status` is not among them (incident_transition only).
FACT_FIELDS = (
    "title",
    "description",
    "kind",
    *EVENT_FIELDS,
    "is_drill",
    "special_care",
    "financial_damage",
    "unlawful_purpose",
    "affected_count",
    *REPORT_ITEM_FIELDS,
    "gdpr_late_reason",
    "gdpr_high_risk",
    "gdpr_notice_exemption",
    "gdpr_notice_exemption_reason",
    "public_notice_at",
    "public_notice_where",
    "drill_findings",
)
# The response team's object permissions on their incident.
TEAM_OBJECT_PERMS = ("incidents.view_incident", "incidents.change_incident")


def _check_classification(systems: list[str], data_classes: list[str]) -> None:
    """Systems and data classes come from the classification registry, never a list typed here."""
    unknown_systems = [s for s in systems if s not in REGISTRY.models]
    unknown_classes = [c for c in data_classes if c not in DataClass.values]
    if unknown_systems or unknown_classes:
        raise IncidentError(_("分類台帳にないシステム・データ分類が指定されています。"))


def _validate(incident: Incident) -> None:
    _check_classification(list(incident.systems), list(incident.data_classes))
    try:
        incident.full_clean()
    except ValidationError as error:
        raise IncidentError(" ".join(error.messages)) from error


def _log(
    incident: Incident,
    actor: User,
    kind: str,
    note: str = "",
    from_status: str = "",
    to_status: str = "",
) -> IncidentTimelineEntry:
    return IncidentTimelineEntry.objects.create(
        incident=incident,
        actor=actor,
        kind=kind,
        note=note,
        from_status=from_status,
        to_status=to_status,
    )


def _refresh_deadline(incident: Incident) -> None:
    """Keep the list's sort key in step with the facts, filings and status (Incident.next_deadline_at)."""
    nearest = incident.nearest_open_deadline()
    if nearest != incident.next_deadline_at:
        incident.next_deadline_at = nearest
        incident.save(update_fields=["next_deadline_at"])


def _locked(incident: Incident | int, actor: User) -> Incident:
    """The incident locked for this transaction, when `actor` may change it; refused otherwise."""
    pk = incident.pk if isinstance(incident, Incident) else incident
    found = Incident.objects.restrict(actor, "change").select_for_update().filter(pk=pk).first()
    if found is None:
        raise IncidentError(_("この漏えい等事案を変更する権限がありません。"))
    return found


def incident_create(*, actor: User, api_client: ApiClient | None = None, **facts: Any) -> Incident:
    """Record a new incident (status 検知); the clocks start at `aware_at`.

    The authority is the actor's permission to add incidents, or, for a monitoring system calling the API,
    its client's `incidents:write` scope (`api_client`, whose service user is `actor`). Opening an incident
    gives that service user nothing to see: it is on no response team."""
    by_scope = (
        api_client is not None
        and api_client.user_id == actor.pk
        and api_client.has_scope(ApiScope.INCIDENTS_WRITE)
    )
    if not by_scope and not actor.has_perm("incidents.add_incident") and not actor.is_superuser:
        raise IncidentError(_("漏えい等事案を登録する権限がありません。"))
    unknown = set(facts) - set(FACT_FIELDS)
    if unknown:
        raise IncidentError(_("変更できない項目が指定されています。"))
    with transaction.atomic(), audit_actor(actor):
        incident = Incident(created_by=actor, **facts)
        _validate(incident)
        incident.save()
        _log(incident, actor, IncidentTimelineEntry.Kind.CREATED, to_status=incident.status)
        _refresh_deadline(incident)
    return incident


def incident_update(*, incident: Incident | int, actor: User, **facts: Any) -> Incident:
    """Change the facts of an incident (never its status); the clocks follow the new facts."""
    unknown = set(facts) - set(FACT_FIELDS)
    if unknown:
        raise IncidentError(_("変更できない項目が指定されています。"))
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        if locked.status == Incident.Status.CLOSED:
            raise IncidentError(_("終結した漏えい等事案は変更できません。"))
        for name, value in facts.items():
            setattr(locked, name, value)
        _validate(locked)
        locked.save()
        _refresh_deadline(locked)
    return locked


def incident_transition(*, incident: Incident | int, to: str, actor: User, note: str = "") -> Incident:
    """Move the incident one step along its lifecycle (Incident.TRANSITIONS); any other move is refused
    and changes nothing. The step is a timeline entry."""
    if to not in Incident.Status.values:
        raise IncidentError(_("不明な状態です。"))
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        current = locked.status
        if to not in Incident.TRANSITIONS[current]:
            raise IncidentError(
                _("「%(from)s」から「%(to)s」へは移れません。")
                % {"from": Incident.Status(current).label, "to": Incident.Status(to).label}
            )
        if to == Incident.Status.CLOSED and locked.actions.filter(completed_at__isnull=True).exists():
            raise IncidentError(_("未完了の是正措置があるため終結できません。"))
        if to == Incident.Status.CLOSED and locked.gdpr_subject_notice_missing():
            raise IncidentError(
                _(
                    "高いリスクのある事案です。本人への通知を登録するか、個別に通知しない根拠と理由"
                    "（公表による場合は公表日時も）を記録するまで終結できません（GDPR第34条）。"
                )
            )
        if to == Incident.Status.CLOSED and locked.notices.filter(status__in=NOTICES_IN_FLIGHT).exists():
            # The notice to the person (APPI 26(2)) is a duty of the incident: closing must not leave letters
            # queued behind it (a closed incident's sender sends nothing). Sent, failed and "no address" are
            # outcomes; pending, sending and unknown are not yet.
            raise IncidentError(
                _(
                    "本人への通知が完了していない（送信待ち・送信中・送信状況不明）ため終結できません（法第26条2項）。"
                )
            )
        locked.status = to
        locked.save(update_fields=["status", "updated_at"])
        _log(locked, actor, IncidentTimelineEntry.Kind.TRANSITION, note, from_status=current, to_status=to)
        _refresh_deadline(locked)
        if to == Incident.Status.CLOSED:
            released = incident_holds_release(incident=locked, actor=actor)
            if released:
                _log(
                    locked,
                    actor,
                    IncidentTimelineEntry.Kind.HOLD,
                    _("リーガルホールドを解除（%(n)s件）") % {"n": released},
                )
    return locked


def incident_file(
    *,
    incident: Incident | int,
    kind: str,
    actor: User,
    filed_at: dt.datetime | None = None,
    reference: str = "",
    late_reason: str = "",
) -> IncidentFiling:
    """Record that a report was filed (PPC 速報 / 確報, GDPR Art. 33): its clock stops. A GDPR filing after
    the 72 hours needs the reasons for the delay (GDPR Art. 33(1)), kept on the incident."""
    if kind not in IncidentFiling.Kind.values:
        raise IncidentError(_("不明な報告の種類です。"))
    filed_at = filed_at or timezone.now()
    if filed_at > timezone.now():
        raise IncidentError(_("提出日時に未来の日時は指定できません。"))
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        if filed_at < locked.aware_at:
            raise IncidentError(_("提出日時は認識日時より前にできません。"))
        if (
            kind == IncidentFiling.Kind.PPC_FINAL
            and not locked.filings.filter(kind=IncidentFiling.Kind.PPC_PRELIMINARY).exists()
        ):
            raise IncidentError(_("確報の前に速報を記録してください（規則8条）。"))
        if kind == IncidentFiling.Kind.GDPR_SA:
            if not locked.gdpr_applies:
                raise IncidentError(_("この事案はGDPRの対象として登録されていません。"))
            if filed_at > locked.clocks().gdpr_sa_due:
                reason = late_reason.strip() or locked.gdpr_late_reason.strip()
                if not reason:
                    raise IncidentError(_("72時間を過ぎた通知には遅延の理由が必要です（GDPR第33条1項）。"))
                if locked.gdpr_late_reason != reason:
                    locked.gdpr_late_reason = reason
                    locked.save(update_fields=["gdpr_late_reason", "updated_at"])
        try:
            with transaction.atomic():
                filing = IncidentFiling.objects.create(
                    incident=locked, kind=kind, filed_at=filed_at, filed_by=actor, reference=reference
                )
        except IntegrityError as error:
            raise IncidentError(_("この報告はすでに記録されています。")) from error
        _log(locked, actor, IncidentTimelineEntry.Kind.FILING, str(IncidentFiling.Kind(kind).label))
        _refresh_deadline(locked)
    return filing


def incident_note(*, incident: Incident | int, actor: User, note: str) -> IncidentTimelineEntry:
    """Add a note to the timeline (no personal data)."""
    if not note.strip():
        raise IncidentError(_("内容を入力してください。"))
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        return _log(locked, actor, IncidentTimelineEntry.Kind.NOTE, note.strip())


def incident_team_add(*, incident: Incident | int, user: User, actor: User) -> None:
    """Put `user` on the incident's response team: they may see and work on this incident only."""
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        for perm in TEAM_OBJECT_PERMS:
            assign_perm(perm, user, locked)
        _log(locked, actor, IncidentTimelineEntry.Kind.TEAM, _("対応チームに追加: %s") % user.get_username())


def incident_team_remove(*, incident: Incident | int, user: User, actor: User) -> None:
    """Take `user` off the incident's response team."""
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        for perm in TEAM_OBJECT_PERMS:
            remove_perm(perm, user, locked)
        _log(
            locked, actor, IncidentTimelineEntry.Kind.TEAM, _("対応チームから削除: %s") % user.get_username()
        )


# --- affected people: scoping, legal holds ----------------------------------------------------------------

SCOPE_BATCH = 10_000  # customer ids per batch of a query scope: one short transaction each
UPLOAD_MAX_LINES = 200_000
UPLOAD_MAX_BYTES = 8 * 1024 * 1024


def _hold_reference(incident: Incident) -> str:
    return incident.reference


def _key_of(line: str) -> tuple[str, str] | None:
    """The match key of one uploaded line: an e-mail's or a phone's blind index, or a member number."""
    term = unicodedata.normalize("NFKC", line).strip()
    if not term:
        return None
    if "@" in term:
        return IncidentScopeKey.Kind.EMAIL, email_index(term)
    if PHONE_LIKE.fullmatch(term):
        phone = phone_index(term)
        if phone:
            return IncidentScopeKey.Kind.PHONE, phone
    if MEMBER_NO.fullmatch(term):
        return IncidentScopeKey.Kind.MEMBER_NO, term
    return None


def _check_scoping(locked: Incident, actor: User) -> None:
    if locked.status == Incident.Status.CLOSED:
        raise IncidentError(_("終結した漏えい等事案の影響範囲は変更できません。"))
    # Scoping reads customers through the gate as `actor`: a role that sees no customer (security) would
    # find nobody and report "0 affected" as if it were a fact. Refused instead.
    if scope_kind(actor, "view") is None:
        raise IncidentError(
            _(
                "顧客を閲覧する権限がないため、影響範囲を特定できません（個人情報保護管理者に依頼してください）。"
            )
        )


@functools.cache
def held_classes() -> dict[str, list[type[Model]]]:
    """Personal data class → the models (from the classification registry) whose rows about a customer hold
    a field of that class (a purchase: attributes; a 要配慮 record: special care). A customer "holds" a class
    when a row of one of them points to them; every customer holds its own identifiers, so the customer
    model itself is not asked."""
    found: dict[str, list[type[Model]]] = {}
    for label in sorted(REGISTRY.models):
        model = apps.get_model(label)
        if model is Customer:
            continue
        field = next((f for f in model._meta.get_fields() if f.name == "customer"), None)
        if field is None or getattr(field, "related_model", None) is not Customer:
            continue
        for name in REGISTRY.personal_fields(label):
            spec = REGISTRY.spec(label, name)
            if spec is not None and model not in found.setdefault(spec.data_class, []):
                found[spec.data_class].append(model)
    return found


def incident_scope_by_query(
    *,
    incident: Incident | int,
    actor: User,
    team_ids: list[int] | None = None,
    channel: str = "",
    created_from: dt.datetime | None = None,
    created_to: dt.datetime | None = None,
    active_from: dt.datetime | None = None,
    active_to: dt.datetime | None = None,
    data_classes: list[str] | None = None,
    enqueue: bool = True,
) -> IncidentScope:
    """Start scoping the affected customers by a query (teams, collection channel, registered or last active
    between two moments, classes of data held), among the customers `actor` may see (the gate). Runs in
    batches (incident_scope_advance)."""
    if channel and channel not in Customer.Channel.values:
        raise IncidentError(_("不明な取得チャネルです。"))
    for start, end in ((created_from, created_to), (active_from, active_to)):
        if start and end and start >= end:
            raise IncidentError(_("期間の開始は終了より前にしてください。"))
    classes = sorted(set(data_classes or []))
    if any(c not in held_classes() for c in classes):
        raise IncidentError(_("分類台帳にないシステム・データ分類が指定されています。"))
    if not (team_ids or channel or created_from or created_to or active_from or active_to or classes):
        raise IncidentError(_("条件を一つ以上指定してください。"))
    moments = {
        "created_from": created_from,
        "created_to": created_to,
        "active_from": active_from,
        "active_to": active_to,
    }
    criteria = {
        "teams": sorted({int(t) for t in team_ids or []}),
        "channel": channel,
        **{name: moment.isoformat() if moment else "" for name, moment in moments.items()},
        "data_classes": classes,
    }
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        _check_scoping(locked, actor)
        # The id ranges walked in batches: from just below the lowest customer id to the highest now.
        ids = Customer.objects.aggregate(first=Min("pk"), last=Max("pk"))
        scope = IncidentScope.objects.create(
            incident=locked,
            method=IncidentScope.Method.QUERY,
            criteria=criteria,
            cursor=max((ids["first"] or 1) - 1, 0),
            first_id=max((ids["first"] or 1) - 1, 0),
            last_id=ids["last"] or 0,
            created_by=actor,
        )
        _log(locked, actor, IncidentTimelineEntry.Kind.SCOPE, _("条件で影響範囲の特定を開始"))
        if enqueue:
            _enqueue_scope(scope.pk)
    return scope


def incident_scope_by_upload(
    *, incident: Incident | int, actor: User, data: bytes, enqueue: bool = True
) -> IncidentScope:
    """Start scoping the affected customers by an uploaded list (one e-mail, phone or member number per
    line, UTF-8). Each line is kept only as its match key (blind index) until matched; lines that are none
    of the three are counted as malformed."""
    if len(data) > UPLOAD_MAX_BYTES:
        raise IncidentError(_("ファイルが大きすぎます（8MBまで）。"))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise IncidentError(_("ファイルはUTF-8のテキストにしてください。")) from error
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise IncidentError(_("ファイルに行がありません。"))
    if len(lines) > UPLOAD_MAX_LINES:
        raise IncidentError(_("行数が多すぎます（200,000行まで）。"))
    keys = [_key_of(line) for line in lines]
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        _check_scoping(locked, actor)
        scope = IncidentScope.objects.create(
            incident=locked,
            method=IncidentScope.Method.UPLOAD,
            invalid=sum(1 for k in keys if k is None),
            created_by=actor,
        )
        # Bulk insert: auditlog does not see it; the scope row (audited) and the timeline entry record it.
        IncidentScopeKey.objects.bulk_create(
            [IncidentScopeKey(scope=scope, kind=k[0], value=k[1]) for k in keys if k is not None],
            batch_size=5_000,
        )
        _log(
            locked,
            actor,
            IncidentTimelineEntry.Kind.SCOPE,
            _("ファイルで影響範囲の特定を開始（%(n)s行）") % {"n": len(lines)},
        )
        if enqueue:
            _enqueue_scope(scope.pk)
    return scope


# The tasks (incidents.tasks) import these services; the services queue them by name (crm.queue).
SCOPE_BATCH_TASK = "incidents.scope_batch"
NOTICES_BATCH_TASK = "incidents.notices_batch"


def _enqueue_scope(scope_id: int) -> None:
    transaction.on_commit(lambda: task_enqueue(SCOPE_BATCH_TASK, scope_id))


def _sql(qs: QuerySet[Any]) -> tuple[str, tuple[Any, ...]]:
    # Django's own compilation of an ORM query (every value a bound parameter), used inside INSERT … SELECT.
    sql, params = qs.query.sql_with_params()
    return sql, tuple(params)


def _insert_affected(scope: IncidentScope, customers: QuerySet[Any]) -> list[int]:
    """INSERT … SELECT the customers of `customers` as affected (once per incident); the ids added."""
    select_sql, params = _sql(customers.values("pk"))
    table = IncidentAffected._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (incident_id, customer_id, scope_id, added_at) "  # noqa: S608
            f"SELECT %s, picked.id, %s, now() FROM ({select_sql}) AS picked(id) "
            f"ON CONFLICT (incident_id, customer_id) DO NOTHING RETURNING customer_id",
            (scope.incident_id, scope.pk, *params),
        )
        return [row[0] for row in cursor.fetchall()]


def _audit_affected_added(scope: IncidentScope, customer_ids: list[int], actor: User) -> None:
    """One audit entry per batch of affected people: the rows are written by set-based SQL, which
    django-auditlog's signals do not see (pitfalls: bulk code writes its own entry). Ids and counts only."""
    if not customer_ids:
        return
    AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(IncidentAffected),
        object_pk=f"incident:{scope.incident_id}:scope:{scope.pk}",
        object_repr=f"影響を受けた本人 {len(customer_ids)}件（事案 #{scope.incident_id}）",
        action=AuditEntry.Action.CREATE,
        changes={},
        actor=actor,
        additional_data={
            "incident_affected": {
                "incident": scope.incident_id,
                "scope": scope.pk,
                "count": len(customer_ids),
                "customer_ids": sorted(customer_ids),
            }
        },
    )


def _hold(incident: Incident, customer_ids: list[int], actor: User) -> None:
    if customer_ids:
        legal_hold_place(
            customer_ids=customer_ids,
            reason=LegalHold.Reason.INCIDENT,
            placed_by=actor,
            reference=_hold_reference(incident),
            note=_("漏えい等事案の調査中（法26条）"),
        )


def _query_batch(scope: IncidentScope, actor: User) -> tuple[list[int], int]:
    """One id range of a query scope: the customers matching the criteria among those `actor` may see."""

    upper = scope.cursor + SCOPE_BATCH
    qs = Customer.objects.restrict(actor, "view").filter(pk__gt=scope.cursor, pk__lte=upper)
    criteria = scope.criteria
    if criteria.get("teams"):
        qs = qs.filter(team_id__in=criteria["teams"])
    if criteria.get("channel"):
        qs = qs.filter(collection_channel=criteria["channel"])
    for name, lookup in (
        ("created_from", "created_at__gte"),
        ("created_to", "created_at__lt"),
        ("active_from", "last_activity_at__gte"),
        ("active_to", "last_activity_at__lt"),
    ):
        if criteria.get(name):
            qs = qs.filter(**{lookup: dt.datetime.fromisoformat(criteria[name])})
    if criteria.get("data_classes"):
        holds_any = Q()
        for data_class in criteria["data_classes"]:
            for model in held_classes()[data_class]:
                rows = model._default_manager.filter(customer_id=OuterRef("pk"))
                holds_any |= Q(Exists(rows))
        qs = qs.filter(holds_any)
    matched = qs.count()
    return _insert_affected(scope, qs), matched


def _upload_match(scope: IncidentScope, actor: User) -> list[int]:
    """Match every key of an upload at once (set-based): one customer → matched and added; none →
    unmatched; several → ambiguous (left for a person to decide, not added). The keys are then removed."""
    visible_sql, visible_params = _sql(Customer.objects.restrict(actor, "view").values("pk"))
    customers = Customer._meta.db_table
    keys = IncidentScopeKey._meta.db_table
    affected = IncidentAffected._meta.db_table
    hits = f"""
        WITH hits AS (
            SELECT k.id AS key_id, c.id AS customer_id
            FROM {keys} k JOIN {customers} c ON c.email_bidx = k.value
            WHERE k.scope_id = %s AND k.kind = 'email'
            UNION
            SELECT k.id, c.id FROM {keys} k JOIN {customers} c ON c.phone_bidx = k.value
            WHERE k.scope_id = %s AND k.kind = 'phone'
            UNION
            SELECT k.id, c.id FROM {keys} k JOIN {customers} c ON c.member_no = k.value
            WHERE k.scope_id = %s AND k.kind = 'member_no'
        ), visible_hits AS (
            SELECT * FROM hits WHERE customer_id IN ({visible_sql})
        ), per_key AS (
            SELECT k.id, count(h.customer_id) AS n, min(h.customer_id) AS customer_id
            FROM {keys} k LEFT JOIN visible_hits h ON h.key_id = k.id
            WHERE k.scope_id = %s GROUP BY k.id
        )"""  # noqa: S608  (table names from the models; values bound)
    params = (scope.pk, scope.pk, scope.pk, *visible_params, scope.pk)
    with connection.cursor() as cursor:
        counts = (
            " SELECT count(*) FILTER (WHERE n = 1), count(*) FILTER (WHERE n = 0),"
            " count(*) FILTER (WHERE n > 1) FROM per_key"
        )
        cursor.execute(hits + counts, params)
        scope.matched, scope.unmatched, scope.ambiguous = cursor.fetchone()
        insert = (
            f" INSERT INTO {affected} (incident_id, customer_id, scope_id, added_at)"  # noqa: S608
            " SELECT DISTINCT %s, customer_id, %s, now() FROM per_key WHERE n = 1"
            " ON CONFLICT (incident_id, customer_id) DO NOTHING RETURNING customer_id"
        )
        cursor.execute(hits + insert, (*params, scope.incident_id, scope.pk))
        added = [row[0] for row in cursor.fetchall()]
    IncidentScopeKey.objects.filter(scope=scope).delete()
    return added


def incident_scope_advance(*, scope_id: int) -> bool:
    """Do the next batch of a scope (a whole upload is one batch); True when more batches remain.

    The scope and its incident are locked for the batch: a duplicate message waits and then finds the
    cursor moved (it does the next batch, never the same one twice: ON CONFLICT keeps each person once), and
    closing the incident is served before or after a batch, never during one. The affected customers of
    the batch are put under the incident's legal hold in the same transaction. The affected count feeds
    規則7(4) (never lowered: a person may have set a larger estimate)."""
    with transaction.atomic():
        scope = IncidentScope.objects.select_for_update().filter(pk=scope_id).first()
        if scope is None or scope.status in (
            IncidentScope.Status.DONE,
            IncidentScope.Status.FAILED,
            IncidentScope.Status.CANCELLED,
        ):
            return False
        incident = Incident.objects.select_for_update().get(pk=scope.incident_id)
        actor = scope.created_by
        with audit_actor(actor):
            if incident.status == Incident.Status.CLOSED:
                scope.status = IncidentScope.Status.CANCELLED
                scope.finished_at = timezone.now()
                scope.save(update_fields=["status", "finished_at"])
                return False
            scope.status = IncidentScope.Status.RUNNING
            if scope.method == IncidentScope.Method.UPLOAD:
                added = _upload_match(scope, actor)
                more = False
            else:
                added, matched = _query_batch(scope, actor)
                scope.matched += matched
                scope.cursor = min(scope.cursor + SCOPE_BATCH, max(scope.last_id, scope.cursor))
                more = scope.cursor < scope.last_id
            _audit_affected_added(scope, added, actor)
            _hold(incident, added, actor)
            scope.added += len(added)
            if not more:
                scope.status = IncidentScope.Status.DONE
                scope.finished_at = timezone.now()
            scope.save()
            if added:
                total = IncidentAffected.objects.filter(incident=incident).count()
                if total > incident.affected_count:
                    incident.affected_count = total
                    incident.save(update_fields=["affected_count", "updated_at"])
                    _refresh_deadline(incident)
            if not more:
                _log(
                    incident,
                    actor,
                    IncidentTimelineEntry.Kind.SCOPE,
                    _("影響範囲の特定が完了（一致 %(m)s、不一致 %(u)s、複数一致 %(a)s、追加 %(n)s）")
                    % {"m": scope.matched, "u": scope.unmatched, "a": scope.ambiguous, "n": scope.added},
                )
        if more:
            _enqueue_scope(scope.pk)
    return more


def incident_scope_fail(*, scope_id: int, error: BaseException) -> None:
    """Mark a scope failed (the kind of error only: no value of the upload in it)."""
    IncidentScope.objects.filter(pk=scope_id).exclude(status=IncidentScope.Status.DONE).update(
        status=IncidentScope.Status.FAILED, error=type(error).__name__, finished_at=timezone.now()
    )


def incident_holds_release(*, incident: Incident, actor: User) -> int:
    """Release the legal holds this incident placed (reason "incident", its own reference) and no other:
    a hold of another incident or of litigation on the same customer stays."""
    # The incident's own holds, found by what crm records as their owner (LegalHold.reference); the
    # authority is the change permission on the incident, checked by the caller's lock (_locked).
    own = LegalHold.objects.filter(
        reason=LegalHold.Reason.INCIDENT, reference=_hold_reference(incident), released_at__isnull=True
    )
    released = 0
    last = 0
    while True:
        batch = list(own.filter(pk__gt=last).order_by("pk")[:5_000])
        if not batch:
            break
        released += legal_hold_release(holds=batch, released_by=actor)
        last = batch[-1].pk
    return released


# --- individual notices (APPI Art. 26(2), 規則10; GDPR Art. 34) -------------------------------------------
#
# Each person gets their notice exactly once, even when a worker is killed mid-batch (README "Individual
# notices"). How:
#
# 1. One sender per incident at a time: a batch runs only while its database session holds the advisory lock
#    (NOTICE_SENDER_LOCK, incident id). PostgreSQL releases it when the session ends, so a killed worker
#    gives it up by itself, and a "sending" row seen by the holder can only belong to a sender that died.
# 2. Claim, then send, then mark, one notice at a time, each step its own commit: the claim is a
#    conditional update pending → sending that records the notice's Message-ID, fixed by the row
#    (<incident-I.notice-N@domain>). It is the idempotency key, written before the e-mail leaves.
# 3. The next holder first resolves the dead sender's "sending" row (at most one per death, as claims are
#    one at a time) by asking the e-mail backend whether that Message-ID left (incidents.mail:
#    `delivered_message_ids`): yes → sent; no → pending again (sent later, same Message-ID); a backend that
#    cannot tell (SMTP) → unknown, shown for a person to check and never sent again by itself.
#
# So nobody is mailed twice, and with a backend that can answer nobody is left out either.

NOTICE_BATCH = 100
NOTICE_SENDER_LOCK = 0x1526  # advisory lock class of "the sender of an incident's notices" (with its id)


class NoticeSenderBusy(Exception):
    """Another worker holds the incident's sender lock: this batch waits its turn (the task retries)."""


def incident_notices_queue(*, incident: Incident | int, actor: User, enqueue: bool = True) -> int:
    """Queue one notice per affected person not yet queued (INSERT … SELECT … ON CONFLICT DO NOTHING: a
    person already queued, sent or not, is never queued again). Returns how many were added."""
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        if locked.status == Incident.Status.CLOSED:
            raise IncidentError(_("終結した漏えい等事案からは通知できません。"))
        if locked.is_drill:
            raise IncidentError(_("訓練の事案では本人へ通知しません。"))
        notices = IncidentNotice._meta.db_table
        affected = IncidentAffected._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {notices} (incident_id, customer_id, status, message_id, error, created_at) "  # noqa: S608
                f"SELECT incident_id, customer_id, %s, '', '', now() FROM {affected} "
                f"WHERE incident_id = %s AND customer_id IS NOT NULL "
                f"ON CONFLICT (incident_id, customer_id) DO NOTHING",
                (IncidentNotice.Status.PENDING, locked.pk),
            )
            added = cursor.rowcount
        _audit_notices_queued(locked, added, actor)
        _log(
            locked,
            actor,
            IncidentTimelineEntry.Kind.NOTE,
            _("本人への通知を%(n)s件登録（法26条2項）") % {"n": added},
        )
        if enqueue and added and not locked.notices_paused:
            _enqueue_notices(locked.pk)
    return added


def incident_notices_pause(*, incident: Incident | int, actor: User) -> None:
    """Pause the sending of an incident's notices: the batch at work stops after the notice in hand."""
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        if locked.notices_paused:
            raise IncidentError(_("通知はすでに一時停止しています。"))
        locked.notices_paused = True
        locked.save(update_fields=["notices_paused", "updated_at"])
        _log(locked, actor, IncidentTimelineEntry.Kind.NOTE, _("本人への通知を一時停止"))


def incident_notices_resume(*, incident: Incident | int, actor: User, enqueue: bool = True) -> None:
    """Resume sending (after a pause, or after a worker died): the next batch first resolves what a dead
    sender left "sending", then sends the pending notices."""
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        if locked.notices_paused:
            locked.notices_paused = False
            locked.save(update_fields=["notices_paused", "updated_at"])
        _log(locked, actor, IncidentTimelineEntry.Kind.NOTE, _("本人への通知を再開"))
        if enqueue:
            _enqueue_notices(locked.pk)


def incident_notices_resolve_unknown(
    *, incident: Incident | int, actor: User, left: bool, enqueue: bool = True
) -> int:
    """A person's answer for the notices whose sender died where the backend could not tell (status
    unknown): they found the Message-IDs in the mail server's log (`left`: marked sent), or found them
    absent (queued again, to be sent under the same Message-ID). Returns how many were resolved."""
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        unknown = list(
            IncidentNotice.objects.filter(incident=locked, status=IncidentNotice.Status.UNKNOWN).values_list(
                "pk", "customer_id"
            )
        )
        for pk, customer_id in unknown:
            to = IncidentNotice.Status.SENT if left else IncidentNotice.Status.PENDING
            fields = {"sent_at": timezone.now()} if left else {}
            _notice_move(locked, pk, customer_id, to, start=IncidentNotice.Status.UNKNOWN, **fields)
        if unknown:
            note = (
                _("送信状況不明の通知%(n)s件を送信済みと確認")
                if left
                else _("送信状況不明の通知%(n)s件を再送")
            )
            _log(locked, actor, IncidentTimelineEntry.Kind.NOTE, note % {"n": len(unknown)})
            if enqueue and not left:
                _enqueue_notices(locked.pk)
    return len(unknown)


# The longest reason a withdrawal of notices takes (the cancel form's limit too).
CANCEL_REASON_MAX = 500


def incident_notices_cancel(*, incident: Incident | int, actor: User, reason: str) -> int:
    """Withdraw the notices no sender has taken yet (pending → cancelled), the reason on the timeline: the
    persons are told by post or telephone instead, or the notices were queued by mistake. A notice being
    sent, or of unknown outcome, is left to its sender or to a person's answer (a sender's row is skipped,
    never waited for). Returns how many were withdrawn."""
    reason = reason.strip()
    if not reason:
        raise IncidentError(_("取り消す理由を入力してください。"))
    if len(reason) > CANCEL_REASON_MAX:
        raise IncidentError(_("理由は%(n)s文字以内で入力してください。") % {"n": CANCEL_REASON_MAX})
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        if locked.status == Incident.Status.CLOSED:
            raise IncidentError(_("終結した漏えい等事案は変更できません。"))
        pending = IncidentNotice.objects.select_for_update(skip_locked=True).filter(
            incident=locked, status=IncidentNotice.Status.PENDING
        )
        ids = list(pending.values_list("pk", flat=True))
        if not ids:
            raise IncidentError(_("取り消せる送信待ちの通知はありません。"))
        IncidentNotice.objects.filter(pk__in=ids).update(status=IncidentNotice.Status.CANCELLED)
        # The UPDATE is invisible to auditlog: one entry with the count (ids only, as every notice entry).
        AuditEntry.objects.create(
            content_type=ContentType.objects.get_for_model(IncidentNotice),
            object_pk=f"incident-notice-cancel:{locked.pk}",
            object_repr=f"{locked.reference} 本人への通知 {len(ids)}件 取消",
            action=AuditEntry.Action.UPDATE,
            changes={"status": [IncidentNotice.Status.PENDING, IncidentNotice.Status.CANCELLED]},
            actor=actor,
            additional_data={"incident_notices_cancelled": {"incident": locked.pk, "count": len(ids)}},
        )
        _log(
            locked,
            actor,
            IncidentTimelineEntry.Kind.NOTE,
            _("本人への通知%(n)s件を取消（理由：%(reason)s）") % {"n": len(ids), "reason": reason},
        )
    return len(ids)


def _enqueue_notices(incident_id: int) -> None:
    transaction.on_commit(lambda: task_enqueue(NOTICES_BATCH_TASK, incident_id))


def _notice_text(incident: Incident) -> tuple[str, str]:
    """The notice's subject and body: the items of 規則10 (概要, 項目, 原因, 二次被害, その他)."""
    subject = _("個人データの漏えい等に関するお知らせ（%(ref)s）") % {"ref": incident.reference}
    parts = [
        (_("概要"), incident.report_summary),
        (_("漏えい等が発生し又は発生したおそれがある個人データの項目"), incident.report_items),
        (_("原因"), incident.report_cause),
        (_("二次被害又はそのおそれの有無及びその内容"), incident.report_secondary_damage),
        (_("その他参考となる事項"), incident.report_other),
    ]
    body = "\n\n".join(f"■ {label}\n{text or '—'}" for label, text in parts)
    company = settings.CRM_COMPANY
    body += f"\n\n{company['name']}\n{company['contact']}\n"
    return subject, body


def notice_message_id(incident_id: int, notice_id: int) -> str:
    """The Message-ID of a notice: fixed by the row, so a resend after a lost "sent" is the same message."""
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip(" >") or "localhost"
    return f"<incident-{incident_id}.notice-{notice_id}@{domain}>"


@contextmanager
def _sender_lock(incident_id: int) -> Iterator[bool]:
    """Hold the incident's sender lock (session-level: it outlives the small commits of the batch and dies
    with the session of a killed worker); False when another session holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", (NOTICE_SENDER_LOCK, incident_id))
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", (NOTICE_SENDER_LOCK, incident_id))


def _notice_move(
    incident: Incident, pk: int, customer_id: int | None, to: str, start: str = "", **fields: Any
) -> bool:
    """Move one notice out of its current state (conditional: pending → sending, sending → the outcome, or
    from `start`) in its own short transaction with its audit entry (ids only); False when another step moved
    it first."""
    expected = start or _FROM.get(to, IncidentNotice.Status.SENDING)
    with transaction.atomic():
        # SKIP LOCKED: a row another session holds (a sender that is not ours) is left to it, not waited for.
        mine = IncidentNotice.objects.select_for_update(skip_locked=True).filter(pk=pk, status=expected)
        moved = bool(list(mine.values_list("pk", flat=True)))
        if moved:
            IncidentNotice.objects.filter(pk=pk).update(status=to, **fields)
            AuditEntry.objects.create(
                content_type=ContentType.objects.get_for_model(IncidentNotice),
                object_pk=str(pk),
                object_repr=f"{incident.reference} 本人への通知 #{pk}",
                action=AuditEntry.Action.UPDATE,
                changes={"status": [expected, to]},
                actor=None,
                additional_data={"incident_notice": {"incident": incident.pk, "customer": customer_id}},
            )
    return moved


# The state a move starts from unless told (a person's answer starts from unknown): a claim or a missing
# address from pending; every other move (an outcome, a dead sender's row back to pending) from sending.
_FROM: dict[str, str] = {
    IncidentNotice.Status.SENDING: IncidentNotice.Status.PENDING,
    IncidentNotice.Status.NO_ADDRESS: IncidentNotice.Status.PENDING,
}


def _notices_reap(incident: Incident, backend: Any) -> None:
    """Resolve the "sending" rows of a sender that died (called with the sender lock held, so no live sender
    owns them) by asking the backend whether their Message-IDs left."""
    stuck = list(
        IncidentNotice.objects.filter(incident=incident, status=IncidentNotice.Status.SENDING).values_list(
            "pk", "customer_id", "message_id"
        )
    )
    if not stuck:
        return
    ask = getattr(backend, "delivered_message_ids", None)
    delivered = ask([m for _pk, _c, m in stuck]) if ask is not None else None
    for pk, customer_id, message_id in stuck:
        if delivered is None:
            _notice_move(incident, pk, customer_id, IncidentNotice.Status.UNKNOWN, error="worker_lost")
        elif message_id in delivered:
            _notice_move(incident, pk, customer_id, IncidentNotice.Status.SENT, sent_at=timezone.now())
        else:
            _notice_move(incident, pk, customer_id, IncidentNotice.Status.PENDING)


# Notices whose outcome is not known yet: an incident holding one is not closed (incident_transition).
NOTICES_IN_FLIGHT = (
    IncidentNotice.Status.PENDING,
    IncidentNotice.Status.SENDING,
    IncidentNotice.Status.UNKNOWN,
)


def incident_notices_send_batch(*, incident_id: int, enqueue: bool = True) -> int:
    """Send the next batch of an incident's pending notices; the number handled (0: none left, or paused).

    Called outside a transaction: each claim and each outcome is its own commit (see the comment above
    NOTICE_BATCH). Raises NoticeSenderBusy while another worker sends this incident's notices."""
    with _sender_lock(incident_id) as mine:
        if not mine:
            raise NoticeSenderBusy(incident_id)
        incident = Incident.objects.filter(pk=incident_id).first()
        if incident is None or incident.notices_paused or incident.status == Incident.Status.CLOSED:
            return 0
        backend = get_connection()
        _notices_reap(incident, backend)
        batch = list(
            IncidentNotice.objects.filter(incident=incident, status=IncidentNotice.Status.PENDING)
            .order_by("pk")
            .values_list("pk", "customer_id")[:NOTICE_BATCH]
        )
        if not batch:
            return 0
        subject, body = _notice_text(incident)
        emails = dict(Customer.objects.filter(pk__in=[c for _pk, c in batch]).values_list("pk", "email"))
        handled = 0
        with backend:
            for pk, customer_id in batch:
                if Incident.objects.filter(
                    Q(notices_paused=True) | Q(status=Incident.Status.CLOSED), pk=incident_id
                ).exists():
                    break
                handled += 1
                address = emails.get(customer_id) or ""
                if not address:
                    _notice_move(incident, pk, customer_id, IncidentNotice.Status.NO_ADDRESS)
                    continue
                message_id = notice_message_id(incident_id, pk)
                if not _notice_move(
                    incident,
                    pk,
                    customer_id,
                    IncidentNotice.Status.SENDING,
                    claimed_at=timezone.now(),
                    message_id=message_id,
                ):
                    continue
                message = EmailMessage(
                    subject,
                    body,
                    settings.DEFAULT_FROM_EMAIL,
                    [address],
                    headers={"Message-ID": message_id},
                    connection=backend,
                )
                try:
                    message.send()
                except Exception as error:  # the kind only: the address must not reach the row or the log
                    _notice_move(
                        incident,
                        pk,
                        customer_id,
                        IncidentNotice.Status.FAILED,
                        error=type(error).__name__[:100],
                    )
                else:
                    _notice_move(
                        incident, pk, customer_id, IncidentNotice.Status.SENT, sent_at=timezone.now()
                    )
    if enqueue and handled:
        _enqueue_notices(incident_id)
    return handled


def _audit_notices_queued(incident: Incident, added: int, actor: User) -> None:
    """The INSERT … SELECT of the queue is invisible to auditlog: one entry with the count."""
    if not added:
        return
    AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(IncidentNotice),
        object_pk=f"incident-notice-queue:{incident.pk}",
        object_repr=f"{incident.reference} 本人への通知 {added}件",
        action=AuditEntry.Action.CREATE,
        changes={},
        actor=actor,
        additional_data={"incident_notices_queued": {"incident": incident.pk, "count": added}},
    )


# --- corrective actions ---------------------------------------------------------------------------------


def incident_action_add(
    *,
    incident: Incident | int,
    actor: User,
    description: str,
    owner: User,
    due_on: dt.date,
) -> IncidentCorrectiveAction:
    """Record a corrective action (再発防止策) with its owner and due date."""
    if not description.strip():
        raise IncidentError(_("内容を入力してください。"))
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        if locked.status == Incident.Status.CLOSED:
            raise IncidentError(_("終結した漏えい等事案は変更できません。"))
        action = IncidentCorrectiveAction.objects.create(
            incident=locked, description=description.strip(), owner=owner, due_on=due_on, created_by=actor
        )
        _log(locked, actor, IncidentTimelineEntry.Kind.NOTE, _("是正措置を登録: #%(n)s") % {"n": action.pk})
    return action


def incident_action_complete(*, action: IncidentCorrectiveAction, actor: User) -> None:
    """Mark a corrective action done (once)."""
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(action.incident_id, actor)
        row = IncidentCorrectiveAction.objects.select_for_update().get(pk=action.pk, incident=locked)
        if row.completed_at is not None:
            raise IncidentError(_("この是正措置は完了しています。"))
        row.completed_at = timezone.now()
        row.save(update_fields=["completed_at"])
        _log(locked, actor, IncidentTimelineEntry.Kind.NOTE, _("是正措置を完了: #%(n)s") % {"n": row.pk})
