"""Writes of breach response: every change of an incident, its status, its filings and its response team.

Each service locks the incident through the gate (`restrict(actor, "change")`, SELECT … FOR UPDATE), so an
actor who may not change the incident changes nothing, and two people moving the same incident at once are
served one after the other (the second sees the first's status). Every step leaves a timeline entry (who,
when, what); auditlog records the row changes (incidents.apps).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from guardian.shortcuts import assign_perm, remove_perm

from crm.audit import audit_actor
from crm.classification import REGISTRY, DataClass
from incidents.models import Incident, IncidentFiling, IncidentTimelineEntry

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


class IncidentError(Exception):
    """A refused incident change; the message is for the user (Japanese, translated)."""


# The facts of an incident a service may set; `status` is not among them (incident_transition only).
FACT_FIELDS = (
    "title",
    "description",
    "kind",
    "occurred_at",
    "discovered_at",
    "aware_at",
    "processor_notified_at",
    "systems",
    "data_classes",
    "encrypted",
    "pseudonymised_only",
    "gdpr_applies",
    "special_care",
    "financial_damage",
    "unlawful_purpose",
    "affected_count",
    "report_summary",
    "report_items",
    "report_persons",
    "report_cause",
    "report_secondary_damage",
    "report_response_to_persons",
    "report_publication",
    "report_prevention",
    "report_other",
    "gdpr_late_reason",
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
    actor: AbstractBaseUser,
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


def _locked(incident: Incident | int, actor: AbstractBaseUser) -> Incident:
    """The incident locked for this transaction, when `actor` may change it; refused otherwise."""
    pk = incident.pk if isinstance(incident, Incident) else incident
    found = Incident.objects.restrict(actor, "change").select_for_update().filter(pk=pk).first()
    if found is None:
        raise IncidentError(_("この漏えい等事案を変更する権限がありません。"))
    return found


def incident_create(*, actor: AbstractBaseUser, **facts: Any) -> Incident:
    """Record a new incident (status 検知); the clocks start at `aware_at`."""
    if not actor.has_perm("incidents.add_incident") and not actor.is_superuser:
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


def incident_update(*, incident: Incident | int, actor: AbstractBaseUser, **facts: Any) -> Incident:
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


def incident_transition(
    *, incident: Incident | int, to: str, actor: AbstractBaseUser, note: str = ""
) -> Incident:
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
        locked.status = to
        locked.save(update_fields=["status", "updated_at"])
        _log(locked, actor, IncidentTimelineEntry.Kind.TRANSITION, note, from_status=current, to_status=to)
        _refresh_deadline(locked)
    return locked


def incident_file(
    *,
    incident: Incident | int,
    kind: str,
    actor: AbstractBaseUser,
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
        _log(locked, actor, IncidentTimelineEntry.Kind.FILING, IncidentFiling.Kind(kind).label)
        _refresh_deadline(locked)
    return filing


def incident_note(*, incident: Incident | int, actor: AbstractBaseUser, note: str) -> IncidentTimelineEntry:
    """Add a note to the timeline (no personal data)."""
    if not note.strip():
        raise IncidentError(_("内容を入力してください。"))
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        return _log(locked, actor, IncidentTimelineEntry.Kind.NOTE, note.strip())


def incident_team_add(*, incident: Incident | int, user: AbstractBaseUser, actor: AbstractBaseUser) -> None:
    """Put `user` on the incident's response team: they may see and work on this incident only."""
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        for perm in TEAM_OBJECT_PERMS:
            assign_perm(perm, user, locked)
        _log(locked, actor, IncidentTimelineEntry.Kind.TEAM, _("対応チームに追加: %s") % user.get_username())


def incident_team_remove(
    *, incident: Incident | int, user: AbstractBaseUser, actor: AbstractBaseUser
) -> None:
    """Take `user` off the incident's response team."""
    with transaction.atomic(), audit_actor(actor):
        locked = _locked(incident, actor)
        for perm in TEAM_OBJECT_PERMS:
            remove_perm(perm, user, locked)
        _log(
            locked, actor, IncidentTimelineEntry.Kind.TEAM, _("対応チームから削除: %s") % user.get_username()
        )
