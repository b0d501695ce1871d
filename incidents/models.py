"""Breach response (漏えい等, APPI Art. 26; GDPR Arts. 33–34): the incident, its append-only timeline, its
filings, and who may see it.

An incident is reachable through the one gate, `Incident.objects.restrict(user, action)`: the security role
and the privacy officer hold the "all incidents" permission of the action; an incident's response team holds
guardian object permissions on that incident (direct-FK tables below, like crm's team permission tables);
everybody else reaches none. The rows hanging off an incident are reachable when their incident is.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self, cast

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from crm.classification import DataClass
from crm.fields import staff_reference
from crm.permissions import RestrictedQuerySet
from incidents.rules import JST, BreachClocks, breach_clocks

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    from crm.permissions import User


# action → the permission that opens every incident for it (security, privacy officer).
ALL_INCIDENT_PERMS = {
    "view": "incidents.view_all_incidents",
    "change": "incidents.change_all_incidents",
    "delete": "incidents.delete_all_incidents",
}
# action → the object permission an incident's response team holds on it.
INCIDENT_OBJECT_PERMS = {"view": "view_incident", "change": "change_incident", "delete": "delete_incident"}


class IncidentQuerySet(RestrictedQuerySet["Incident"]):
    """The incident rule of the gate: the model permission of the action first (NetBox), then either the
    action's "all incidents" permission or the incident's object permission (directly or through a group).
    Customers' teams play no part: being allowed to see a team's customers never opens its incidents."""

    def restrict_rows(self, user: User, action: str) -> Self:
        if user.has_perm(ALL_INCIDENT_PERMS[action]):
            return self.all()
        perm = {
            "permission__codename": INCIDENT_OBJECT_PERMS[action],
            "permission__content_type__app_label": "incidents",
        }
        user_id = cast(int, user.pk)  # restrict() asks only for a signed-in, active user
        direct = IncidentUserObjectPermission.objects.filter(user_id=user_id, **perm)
        via_group = IncidentGroupObjectPermission.objects.filter(
            group__in=user.groups.all().values("pk"), **perm
        )
        return self.filter(
            Q(pk__in=direct.values("content_object_id")) | Q(pk__in=via_group.values("content_object_id"))
        )


class IncidentPartQuerySet(RestrictedQuerySet[Any]):
    """Rows of an incident (timeline, filings, affected people): their own model permission for the
    action, and their incident visible to the user."""

    gate_incident: ClassVar[str] = "incident"

    def restrict_rows(self, user: User, action: str) -> Self:
        visible = Incident.objects.restrict(user, "view").values("pk")
        return self.filter(**{f"{self.gate_incident}__in": visible})


@dataclass(frozen=True)
class Deadline:
    """One clock of an incident as shown: which filing stops it, its label with the article, when it runs
    out, and the filing once made."""

    kind: str
    label: StrOrPromise
    due: dt.datetime
    filing: IncidentFiling | None

    def overdue(self, now: dt.datetime | None = None) -> bool:
        if self.filing is not None:
            return self.filing.filed_at > self.due
        return (now or timezone.now()) > self.due


# The facts of the event beside its kind (when it happened and came to light, which systems and data classes
# it touched, how they were protected): none names a person. One list for the services (FACT_FIELDS) and the
# registry.
EVENT_FIELDS = (
    "occurred_at",
    "discovered_at",
    "aware_at",
    "processor_notified_at",
    "systems",
    "data_classes",
    "encrypted",
    "pseudonymised_only",
    "gdpr_applies",
)

# 規則8(1)(i)–(ix): the items of the regulator's report, in the order the PPC's form asks them (fields of
# Incident below). One list for the report pages, the admin's fieldset, the services and the registry.
REPORT_ITEM_FIELDS = (
    "report_summary",
    "report_items",
    "report_persons",
    "report_cause",
    "report_secondary_damage",
    "report_response_to_persons",
    "report_publication",
    "report_prevention",
    "report_other",
)


class Incident(models.Model):
    """One personal-data breach or suspected breach (漏えい等事案) and its facts.

    The clocks start when the company became aware (`aware_at`, 規則8: "知ったとき"); which ones apply and
    when they run out is computed by incidents.rules.breach_clocks from the trigger facts. `status` is a
    fact of the response and changes only through incidents.services.incident_transition, along
    TRANSITIONS; each change is a timeline entry.
    """

    class Kind(models.TextChoices):
        UNAUTHORISED_ACCESS = "unauthorised_access", _("不正アクセス")
        LOSS_THEFT = "loss_theft", _("紛失・盗難")
        MISDELIVERY = "misdelivery", _("誤送付・誤送信")
        INTERNAL_MISUSE = "internal_misuse", _("内部不正")
        RANSOMWARE = "ransomware", _("ランサムウェア")
        VENDOR_BREACH = "vendor_breach", _("委託先での漏えい等")
        OTHER = "other", _("その他")

    class Status(models.TextChoices):
        DETECTED = "detected", _("検知")
        CONTAINED = "contained", _("封じ込め")
        ASSESSED = "assessed", _("評価済み")
        NOTIFIED = "notified", _("報告・通知済み")
        RECOVERED = "recovered", _("復旧")
        CLOSED = "closed", _("終結")

    class SubjectNoticeExemption(models.TextChoices):
        """GDPR Art. 34(3): when the persons of a high-risk breach need not be told one by one."""

        ENCRYPTED = "encrypted", _("暗号化等により第三者が理解できない（GDPR第34条3項(a)）")
        RISK_REMOVED = "risk_removed", _("事後の措置により高いリスクが生じなくなった（GDPR第34条3項(b)）")
        PUBLIC_NOTICE = "public_notice", _("過大な労力を要するため公表で代替（GDPR第34条3項(c)）")

    # The lifecycle: from → the states it may move to. incident_transition refuses every other move.
    TRANSITIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        Status.DETECTED: (Status.CONTAINED,),
        Status.CONTAINED: (Status.ASSESSED,),
        Status.ASSESSED: (Status.NOTIFIED,),
        Status.NOTIFIED: (Status.RECOVERED,),
        Status.RECOVERED: (Status.CLOSED,),
        Status.CLOSED: (),
    }

    title = models.CharField(_("件名"), max_length=200, help_text=_("個人情報を書かないでください。"))
    description = models.TextField(_("説明"), blank=True, help_text=_("個人情報を書かないでください。"))
    kind = models.CharField(_("種別"), max_length=32, choices=Kind.choices)
    status = models.CharField(_("状態"), max_length=16, choices=Status.choices, default=Status.DETECTED)

    occurred_at = models.DateTimeField(_("発生日時（推定）"), null=True, blank=True)
    discovered_at = models.DateTimeField(_("発見日時"))
    aware_at = models.DateTimeField(
        _("認識日時"), help_text=_("事業者が漏えい等を知った時点。報告期限はここから数えます（規則8条）。")
    )
    processor_notified_at = models.DateTimeField(
        _("委託先からの通知日時"),
        null=True,
        blank=True,
        help_text=_("委託先から通知を受けた日時（規則9条：通知した委託先は報告義務を免れます）"),
    )

    systems = ArrayField(
        models.CharField(max_length=100),
        verbose_name=_("関係するシステム・データ"),
        default=list,
        blank=True,
        help_text=_("分類台帳のモデル（例：crm.Customer）"),
    )
    data_classes = ArrayField(
        models.CharField(max_length=20, choices=DataClass.choices),
        verbose_name=_("関係するデータの分類"),
        default=list,
        blank=True,
    )
    encrypted = models.BooleanField(_("高度な暗号化等の措置あり"), default=False)
    pseudonymised_only = models.BooleanField(_("仮名加工情報のみ（法41条9項）"), default=False)
    gdpr_applies = models.BooleanField(_("GDPRの対象（EU域内の本人を含む）"), default=False)

    # 規則7: the report triggers.
    special_care = models.BooleanField(_("要配慮個人情報を含む（規則7条1号）"), default=False)
    financial_damage = models.BooleanField(_("財産的被害のおそれ（規則7条2号）"), default=False)
    unlawful_purpose = models.BooleanField(_("不正の目的によるおそれ（規則7条3号）"), default=False)
    affected_count = models.PositiveIntegerField(_("本人の数（規則7条4号）"), default=0)

    # 規則8(1)(i)–(ix): the items of the report, in this order.
    report_summary = models.TextField(_("概要"), blank=True)
    report_items = models.TextField(_("漏えい等が発生し又は発生したおそれがある個人データの項目"), blank=True)
    report_persons = models.TextField(_("本人の数"), blank=True)
    report_cause = models.TextField(_("原因"), blank=True)
    report_secondary_damage = models.TextField(_("二次被害又はそのおそれの有無及びその内容"), blank=True)
    report_response_to_persons = models.TextField(_("本人への対応の実施状況"), blank=True)
    report_publication = models.TextField(_("公表の実施状況"), blank=True)
    report_prevention = models.TextField(_("再発防止のための措置"), blank=True)
    report_other = models.TextField(_("その他参考となる事項"), blank=True)

    is_drill = models.BooleanField(
        _("訓練"),
        default=False,
        help_text=_("訓練の事案：本人への通知は送信されず、報告書に訓練と表示されます。"),
    )

    # 公表 (APPI 26(2) ただし書, 規則10; GDPR Art. 34(3)(c)): when individual notice is impossible or would
    # take disproportionate effort, the public notice made instead — when and where.
    public_notice_at = models.DateTimeField(_("公表日時"), null=True, blank=True)
    public_notice_where = models.TextField(
        _("公表の方法・掲載場所"),
        blank=True,
        help_text=_(
            "本人への通知が困難な場合の代替措置（法26条2項ただし書）。例：自社ウェブサイトのお知らせ"
        ),
    )
    drill_findings = models.TextField(
        _("訓練で判明した事項"), blank=True, help_text=_("訓練の場合：判明した課題（対応は是正措置に登録）")
    )
    # Sending of the individual notices stopped by a person (incident_notices_pause); a batch that finds it
    # set stops after the notice in hand. Changed only by the pause / resume services.
    notices_paused = models.BooleanField(_("通知の一時停止"), default=False, editable=False)

    gdpr_late_reason = models.TextField(
        _("遅延の理由（GDPR第33条1項）"),
        blank=True,
        help_text=_("72時間以内に監督機関へ通知しなかった場合は必須"),
    )
    # GDPR Art. 34: the persons are told without undue delay when the breach is likely to result in a high
    # risk to their rights and freedoms, unless a condition of Art. 34(3) holds; the decision not to tell them
    # is recorded with its reason (closing waits for one or the other: gdpr_subject_notice_missing).
    gdpr_high_risk = models.BooleanField(
        _("本人の権利及び自由に対する高いリスク（GDPR第34条1項）"),
        default=False,
        help_text=_("高いリスクがある場合、本人への通知か、通知しない根拠と理由の記録が必要です"),
    )
    gdpr_notice_exemption = models.CharField(
        _("本人に個別に通知しない根拠（GDPR第34条3項）"),
        max_length=20,
        choices=SubjectNoticeExemption.choices,
        blank=True,
    )
    gdpr_notice_exemption_reason = models.TextField(
        _("本人に個別に通知しない理由（GDPR第34条3項）"),
        blank=True,
        help_text=_("根拠を選んだ場合は必須（個人を特定しない記述）"),
    )

    # The nearest deadline not yet met by a filing (NULL once closed or nothing is due): what the list is
    # sorted by. Written by the services from incidents.rules whenever the facts, filings or status change
    # (deadlines move only with those, never with the clock on the wall), so the order is an indexed column.
    next_deadline_at = models.DateTimeField(_("直近の期限"), null=True, blank=True, editable=False)

    created_by = staff_reference(_("登録者"), optional=False)
    created_at = models.DateTimeField(_("登録日時"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    objects = IncidentQuerySet.as_manager()

    class Meta:
        verbose_name = _("漏えい等事案")
        verbose_name_plural = _("漏えい等事案")
        ordering = ["-aware_at"]
        permissions = [
            ("view_all_incidents", _("すべての漏えい等事案を閲覧できる")),
            ("change_all_incidents", _("すべての漏えい等事案を変更できる")),
            ("delete_all_incidents", _("すべての漏えい等事案を削除できる")),
        ]
        indexes = [
            models.Index(fields=["status", "aware_at"], name="incident_status_aware_idx"),
            models.Index(fields=["next_deadline_at"], name="incident_next_deadline_idx"),
        ]

    def __str__(self) -> str:
        return f"INC-{self.pk}"

    @property
    def reference(self) -> str:
        """The incident's number as other records (legal holds) cite it."""
        return f"INC-{self.pk}"

    def clocks(self) -> BreachClocks:
        """Reportability and deadlines of this incident (incidents.rules, the one place they are made)."""
        return breach_clocks(
            self.aware_at,
            special_care=self.special_care,
            financial_damage=self.financial_damage,
            unlawful_purpose=self.unlawful_purpose,
            affected=self.affected_count,
            encrypted=self.encrypted,
            pseudonymised_only=self.pseudonymised_only,
        )

    def deadlines(self) -> list[Deadline]:
        """The clocks that apply to this incident, in the order the page shows them: the PPC's two reports
        only when reportable (規則7), GDPR's only when GDPR applies; each with its filing if made."""
        clocks = self.clocks()
        filed: dict[str, IncidentFiling] = {}
        if self.pk is not None:
            filed = {f.kind: f for f in self.filings.all()}
        out: list[Deadline] = []
        if clocks.appi_reportable:
            prelim = filed.get(IncidentFiling.Kind.PPC_PRELIMINARY)
            out.append(
                Deadline(
                    IncidentFiling.Kind.PPC_PRELIMINARY,
                    _("速報（規則8条1項）目安3日"),
                    clocks.appi_prelim_target,
                    prelim,
                )
            )
            out.append(
                Deadline(
                    IncidentFiling.Kind.PPC_PRELIMINARY,
                    _("速報（規則8条1項）期限5日"),
                    clocks.appi_prelim_limit,
                    prelim,
                )
            )
            out.append(
                Deadline(
                    IncidentFiling.Kind.PPC_FINAL,
                    _("確報（規則8条2項）%(days)s日") % {"days": clocks.appi_final_days},
                    clocks.appi_final_due,
                    filed.get(IncidentFiling.Kind.PPC_FINAL),
                )
            )
        if self.gdpr_applies:
            out.append(
                Deadline(
                    IncidentFiling.Kind.GDPR_SA,
                    _("GDPR第33条1項 72時間"),
                    clocks.gdpr_sa_due,
                    filed.get(IncidentFiling.Kind.GDPR_SA),
                )
            )
        return out

    def nearest_open_deadline(self) -> dt.datetime | None:
        """The earliest deadline without its filing, while the incident is open."""
        if self.status == Incident.Status.CLOSED:
            return None
        open_ = [d.due for d in self.deadlines() if d.filing is None]
        return min(open_) if open_ else None

    def notice_counts(self) -> dict[str, int]:
        """How many of this incident's individual notices are in each state (the progress of the sending)."""
        rows = self.notices.order_by().values_list("status").annotate(n=models.Count("pk"))
        return {status: n for status, n in rows}

    def gdpr_late(self, now: dt.datetime | None = None) -> bool:
        """Whether GDPR's 72 hours ran out without a filing to the supervisory authority in time."""
        if not self.gdpr_applies or self.aware_at is None:
            return False
        due = self.clocks().gdpr_sa_due
        filing = None
        if self.pk is not None:
            filing = self.filings.filter(kind=IncidentFiling.Kind.GDPR_SA).first()
        if filing is not None:
            return filing.filed_at > due
        return (now or timezone.now()) > due

    def gdpr_subject_notice_missing(self) -> bool:
        """GDPR Art. 34: a high-risk breach whose persons were neither told (notices queued, each with its
        outcome before closing) nor left untold on a ground of Art. 34(3) with its reason (for (c), once the
        public notice is recorded). Drills tell nobody: never missing."""
        if not (self.gdpr_applies and self.gdpr_high_risk) or self.is_drill:
            return False
        exemption = self.gdpr_notice_exemption
        if exemption == self.SubjectNoticeExemption.PUBLIC_NOTICE:
            return self.public_notice_at is None or not self.gdpr_notice_exemption_reason.strip()
        if exemption:
            return not self.gdpr_notice_exemption_reason.strip()
        return self.pk is None or not self.notices.exclude(status=IncidentNotice.Status.CANCELLED).exists()

    def clean(self) -> None:
        """Single-row rules: the order of the moments, GDPR's reasons once 72 hours have passed, and the
        reason for not telling the persons of a high-risk breach (Art. 34(3))."""
        errors: dict[str, Any] = {}
        if self.discovered_at and self.aware_at and self.aware_at < self.discovered_at:
            errors["aware_at"] = _("認識日時は発見日時より前にできません。")
        if self.occurred_at and self.discovered_at and self.occurred_at > self.discovered_at:
            errors["occurred_at"] = _("発生日時は発見日時より後にできません。")
        if self.aware_at and self.gdpr_late() and not self.gdpr_late_reason.strip():
            errors["gdpr_late_reason"] = _(
                "認識から72時間を過ぎています。遅延の理由を記入してください（GDPR第33条1項）。"
            )
        if (self.gdpr_high_risk or self.gdpr_notice_exemption) and not self.gdpr_applies:
            errors["gdpr_high_risk"] = _("GDPR第34条の判断は、GDPRの対象の事案にのみ記録できます。")
        if self.gdpr_notice_exemption and not self.gdpr_high_risk:
            errors["gdpr_notice_exemption"] = _(
                "個別に通知しない根拠は、高いリスクがある事案にのみ記録できます（GDPR第34条3項）。"
            )
        if self.gdpr_notice_exemption and not self.gdpr_notice_exemption_reason.strip():
            errors["gdpr_notice_exemption_reason"] = _(
                "本人に個別に通知しない理由を記入してください（GDPR第34条3項）。"
            )
        if errors:
            raise ValidationError(errors)


class IncidentUserObjectPermission(UserObjectPermissionBase):
    """Direct-FK guardian table: a response-team member's permissions on one incident."""

    content_object = models.ForeignKey(Incident, on_delete=models.CASCADE)


class IncidentGroupObjectPermission(GroupObjectPermissionBase):
    """Direct-FK guardian table: a group's permissions on one incident."""

    content_object = models.ForeignKey(Incident, on_delete=models.CASCADE)


class IncidentTimelineEntry(models.Model):
    """One step of the response (who, when, what): created, a transition, a filing, a note.

    Append-only: the database refuses UPDATE, DELETE and TRUNCATE (migration 0002), as for the consent
    ledger. Written only by incidents.services."""

    class Kind(models.TextChoices):
        CREATED = "created", _("登録")
        TRANSITION = "transition", _("状態の変更")
        FILING = "filing", _("報告の提出")
        TEAM = "team", _("対応チームの変更")
        SCOPE = "scope", _("影響範囲の確定")
        HOLD = "hold", _("リーガルホールド")
        NOTE = "note", _("記録")

    incident = models.ForeignKey(
        Incident, on_delete=models.PROTECT, related_name="timeline", verbose_name=_("漏えい等事案")
    )
    at = models.DateTimeField(_("日時"), default=timezone.now)
    actor = staff_reference(_("実施者"), optional=False)
    kind = models.CharField(_("種類"), max_length=16, choices=Kind.choices)
    from_status = models.CharField(_("変更前"), max_length=16, choices=Incident.Status.choices, blank=True)
    to_status = models.CharField(_("変更後"), max_length=16, choices=Incident.Status.choices, blank=True)
    note = models.TextField(_("内容"), blank=True, help_text=_("個人情報を書かないでください。"))

    objects = IncidentPartQuerySet.as_manager()

    class Meta:
        verbose_name = _("対応記録")
        verbose_name_plural = _("対応記録")
        ordering = ["at", "pk"]
        indexes = [models.Index(fields=["incident", "at"], name="incident_timeline_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"


class IncidentFiling(models.Model):
    """A report filed with an authority: PPC 速報 (規則8条1項), PPC 確報 (規則8条2項), GDPR Art. 33 to the
    supervisory authority. Filing stops that clock. One of each per incident; append-only like the
    timeline (a correction is a new timeline note, the filing itself stays as it was made)."""

    class Kind(models.TextChoices):
        PPC_PRELIMINARY = "ppc_prelim", _("個人情報保護委員会への速報（規則8条1項）")
        PPC_FINAL = "ppc_final", _("個人情報保護委員会への確報（規則8条2項）")
        GDPR_SA = "gdpr_sa", _("監督機関への通知（GDPR第33条）")

    incident = models.ForeignKey(
        Incident, on_delete=models.PROTECT, related_name="filings", verbose_name=_("漏えい等事案")
    )
    kind = models.CharField(_("報告"), max_length=16, choices=Kind.choices)
    filed_at = models.DateTimeField(_("提出日時"))
    filed_by = staff_reference(_("提出者"), optional=False)
    reference = models.CharField(_("受付番号"), max_length=100, blank=True)
    recorded_at = models.DateTimeField(_("記録日時"), auto_now_add=True)

    objects = IncidentPartQuerySet.as_manager()

    class Meta:
        verbose_name = _("報告の提出")
        verbose_name_plural = _("報告の提出")
        ordering = ["filed_at"]
        constraints = [models.UniqueConstraint(fields=["incident", "kind"], name="incident_filing_once")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"


class IncidentScope(models.Model):
    """One scoping of an incident's affected people: by a query over customers (teams, collection channel,
    registered between two dates) or by an uploaded list of e-mails / phones / member numbers matched through
    the blind indexes. Run in batches by a Celery task (incidents.tasks), its progress and counts kept here.
    The uploaded values themselves are kept only as keys until matched (IncidentScopeKey), then removed."""

    class Method(models.TextChoices):
        QUERY = "query", _("条件で特定")
        UPLOAD = "upload", _("ファイルで特定")

    class Status(models.TextChoices):
        PENDING = "pending", _("待機中")
        RUNNING = "running", _("実行中")
        DONE = "done", _("完了")
        FAILED = "failed", _("失敗")
        CANCELLED = "cancelled", _("中止（事案の終結）")

    incident = models.ForeignKey(
        Incident, on_delete=models.PROTECT, related_name="scopes", verbose_name=_("漏えい等事案")
    )
    method = models.CharField(_("方法"), max_length=8, choices=Method.choices)
    status = models.CharField(_("状態"), max_length=10, choices=Status.choices, default=Status.PENDING)
    # For a query: {"teams": [ids], "channel": "", "created_from": iso, "created_to": iso} (no personal data).
    criteria = models.JSONField(_("条件"), default=dict, blank=True)
    cursor = models.BigIntegerField(_("進捗位置"), default=0)
    # Where the walk over customer ids began (just below the lowest id when the scope was created).
    first_id = models.BigIntegerField(_("開始位置"), default=0)
    last_id = models.BigIntegerField(_("最終位置"), default=0)
    matched = models.PositiveIntegerField(_("一致"), default=0)
    unmatched = models.PositiveIntegerField(_("不一致"), default=0)
    ambiguous = models.PositiveIntegerField(_("複数一致"), default=0)
    invalid = models.PositiveIntegerField(_("形式不正"), default=0)
    added = models.PositiveIntegerField(_("追加した本人"), default=0)
    error = models.TextField(_("エラー"), blank=True)
    created_by = staff_reference(_("実施者"), optional=False)
    created_at = models.DateTimeField(_("開始日時"), auto_now_add=True)
    finished_at = models.DateTimeField(_("終了日時"), null=True, blank=True)

    objects = IncidentPartQuerySet.as_manager()

    class Meta:
        verbose_name = _("影響範囲の特定")
        verbose_name_plural = _("影響範囲の特定")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_method_display()} #{self.pk}"

    @property
    def progress(self) -> int:
        """Percent done (a query: how far through the customers' ids; an upload: matched at once)."""
        if self.status == IncidentScope.Status.DONE:
            return 100
        span = self.last_id - self.first_id
        if span <= 0:
            return 0
        return min(99, max(0, int((self.cursor - self.first_id) * 100 / span)))


class IncidentScopeKeyQuerySet(IncidentPartQuerySet):
    """Keys reach their incident through their scope."""

    gate_incident = "scope__incident"


class IncidentScopeKey(models.Model):
    """One line of an uploaded list, as the key it is matched by: the blind index of an e-mail or phone
    (crm.crypto), or a member number. Deleted when its scope has been matched: only the counts stay."""

    class Kind(models.TextChoices):
        EMAIL = "email", _("メールアドレス")
        PHONE = "phone", _("電話番号")
        MEMBER_NO = "member_no", _("会員番号")

    scope = models.ForeignKey(IncidentScope, on_delete=models.CASCADE, related_name="keys")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    value = models.CharField(max_length=128)

    objects = IncidentScopeKeyQuerySet.as_manager()

    class Meta:
        verbose_name = _("照合キー")
        verbose_name_plural = _("照合キー")
        indexes = [models.Index(fields=["scope", "kind"], name="incident_scopekey_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"


class IncidentAffected(models.Model):
    """A customer affected by an incident (本人). While the incident is open the customer is under a legal
    hold (crm.retention: reason "incident", reference INC-n) that closing the incident releases. The customer
    reference becomes NULL if the customer is erased later, after the hold ended."""

    incident = models.ForeignKey(
        Incident, on_delete=models.PROTECT, related_name="affected", verbose_name=_("漏えい等事案")
    )
    customer = models.ForeignKey(
        "crm.Customer",
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        verbose_name=_("顧客"),
    )
    scope = models.ForeignKey(
        IncidentScope, on_delete=models.PROTECT, related_name="+", verbose_name=_("影響範囲の特定")
    )
    added_at = models.DateTimeField(_("追加日時"), default=timezone.now)

    objects = IncidentPartQuerySet.as_manager()

    class Meta:
        verbose_name = _("影響を受けた本人")
        verbose_name_plural = _("影響を受けた本人")
        constraints = [
            models.UniqueConstraint(fields=["incident", "customer"], name="incident_affected_once")
        ]
        indexes = [models.Index(fields=["customer"], name="incident_affected_customer_idx")]

    def __str__(self) -> str:
        return f"INC-{self.incident_id} / #{self.pk}"


class IncidentNotice(models.Model):
    """The notice to one affected person (APPI Art. 26(2), 規則10; GDPR Art. 34): one row per person and
    incident (a unique constraint), so a person is never queued twice.

    Sent exactly once per person (incidents.services.incident_notices_send_batch): one sender per incident
    at a time (a PostgreSQL advisory lock its session holds), each notice claimed by a conditional update
    pending → sending that records its Message-ID (the idempotency key, deterministic from the row) in its own
    commit before the e-mail leaves, then marked sent. A "sending" row found by the next sender belongs to a
    sender that died; it is resolved by asking the e-mail backend whether that Message-ID left: yes → sent,
    no → pending (sent later with the same Message-ID), the backend cannot tell → unknown, for a person to
    check (never sent twice by itself)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("送信待ち")
        SENDING = "sending", _("送信中")
        SENT = "sent", _("送信済み")
        NO_ADDRESS = "no_address", _("連絡先なし（郵送・電話または公表）")
        FAILED = "failed", _("送信失敗")
        UNKNOWN = "unknown", _("送信状況不明（要確認）")
        # Withdrawn before any sender took it, with the reason on the timeline (incident_notices_cancel).
        CANCELLED = "cancelled", _("取消（送信しない）")

    incident = models.ForeignKey(
        Incident, on_delete=models.PROTECT, related_name="notices", verbose_name=_("漏えい等事案")
    )
    customer = models.ForeignKey(
        "crm.Customer", on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("顧客")
    )
    status = models.CharField(_("状態"), max_length=12, choices=Status.choices, default=Status.PENDING)
    claimed_at = models.DateTimeField(_("送信開始"), null=True, blank=True)
    sent_at = models.DateTimeField(_("送信日時"), null=True, blank=True)
    message_id = models.CharField(_("Message-ID"), max_length=200, blank=True)
    error = models.CharField(_("エラー"), max_length=100, blank=True)
    created_at = models.DateTimeField(_("登録日時"), auto_now_add=True)

    objects = IncidentPartQuerySet.as_manager()

    class Meta:
        verbose_name = _("本人への通知")
        verbose_name_plural = _("本人への通知")
        constraints = [models.UniqueConstraint(fields=["incident", "customer"], name="incident_notice_once")]
        indexes = [models.Index(fields=["incident", "status"], name="incident_notice_status_idx")]

    def __str__(self) -> str:
        return f"INC-{self.incident_id} / #{self.pk}"


class IncidentCorrectiveAction(models.Model):
    """A corrective action (再発防止策, 規則8(1)(viii)) with its owner and due date. The incident cannot be
    closed while one is open (incident_transition)."""

    incident = models.ForeignKey(
        Incident, on_delete=models.PROTECT, related_name="actions", verbose_name=_("漏えい等事案")
    )
    description = models.TextField(_("内容"), help_text=_("個人情報を書かないでください。"))
    owner = staff_reference(_("担当者"), optional=False)
    due_on = models.DateField(_("期限"))
    completed_at = models.DateTimeField(_("完了日時"), null=True, blank=True)
    created_by = staff_reference(_("登録者"), optional=False)
    created_at = models.DateTimeField(_("登録日時"), auto_now_add=True)

    objects = IncidentPartQuerySet.as_manager()

    class Meta:
        verbose_name = _("是正措置")
        verbose_name_plural = _("是正措置")
        ordering = ["due_on", "pk"]

    def __str__(self) -> str:
        return f"INC-{self.incident_id} / #{self.pk}"

    def overdue(self, now: dt.datetime | None = None) -> bool:
        """Not done and its due date (a day in JST, the whole day allowed) has passed."""
        today = (now or timezone.now()).astimezone(JST).date()
        return self.completed_at is None and today > self.due_on
