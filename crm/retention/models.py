"""Retention policies, legal holds, runs and tombstones (issue: retention engine).

APPI Art. 22 and GDPR Art. 5(1)(e) ask that personal data be deleted once no longer needed; 法人税法 and
会社法 432(2) ask that tax and accounting records be kept; GDPR Art. 17(3)(b)/(e) let a legal obligation or a
legal claim override erasure. These models hold the rules (RetentionPolicy), the overrides (LegalHold), the
progress of each run (RetentionRun, RetentionRunSlice) and the proof that an erasure happened (Tombstone),
none of which holds a customer's personal data.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import models
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.fields import staff_reference
from crm.permissions import ROLE_AUDITOR, ROLE_PRIVACY, ROLE_SECURITY, ROLE_SUPPORT, RestrictedQuerySet
from crm.retention import field_classes  # noqa: F401  (declares the fields)
from crm.roles import grant_role_permissions

__all__ = ["LegalHold", "RetentionPolicy", "RetentionRun", "RetentionRunSlice", "Tombstone"]


class RetentionPolicy(models.Model):
    """One retention rule: what it covers, when it applies, what it does, and on which legal basis.

    A run evaluates the trigger at its `as_of` instant; the same predicate serves the dry run (admin preview)
    and the real run, so the preview counts what the run will do.
    """

    class Scope(models.TextChoices):
        CUSTOMERS = "customers", _("顧客（本人のデータ全体）")
        MARKETING = "marketing_preferences", _("マーケティング設定（嗜好・配信設定）")
        BEHAVIOURAL = "behavioural", _("行動データ（行動イベント・端末ID）")
        ACCESS_LOGS = "access_logs", _("アクセスログ")
        DSAR_PACKAGES = "dsar_packages", _("完了した開示等請求の開示データ")
        PROVISION_RECORDS = "provision_records", _("第三者提供・受領の記録（規則21・24）")
        REQUEST_RECORDS = "request_records", _("完了した開示等請求とその記録")

    class Trigger(models.TextChoices):
        INACTIVE = "inactive", _("最終利用からN日経過")
        CONSENT_WITHDRAWN = "consent_withdrawn", _("利用目的への同意撤回からN日経過")
        ACCOUNT_CLOSED = "account_closed", _("退会からN日経過")
        RECORD_AGE = "record_age", _("記録の作成からN日経過")
        PERIOD_ENDED = "period_ended", _("記録ごとの法定保存期間の満了からN日経過")

    class Action(models.TextChoices):
        ERASE = "erase", _("消去")
        ANONYMISE = "anonymise", _("匿名化")
        PSEUDONYMISE = "pseudonymise", _("仮名化（法第41条）")

    name = models.CharField(_("名称"), max_length=120, unique=True)
    scope = models.CharField(_("対象"), max_length=24, choices=Scope.choices, default=Scope.CUSTOMERS)
    trigger = models.CharField(_("契機"), max_length=20, choices=Trigger.choices)
    days = models.PositiveIntegerField(_("日数（N）"))
    consent_purpose = models.CharField(
        _("利用目的コード"),
        max_length=64,
        blank=True,
        help_text=_("契機が「同意撤回」のときに対象とする利用目的のコード（例: marketing_email）。"),
    )
    action = models.CharField(_("処理"), max_length=12, choices=Action.choices)
    legal_basis = models.TextField(
        _("法的根拠"),
        help_text=_("例: 個人情報保護法第22条（利用する必要がなくなったときの消去）、GDPR第5条第1項(e)"),
    )
    enabled = models.BooleanField(_("有効"), default=False)
    batch_size = models.PositiveIntegerField(_("1バッチの件数"), default=2000)
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    class Meta:
        verbose_name = _("保存期間ポリシー")
        verbose_name_plural = _("保存期間ポリシー")
        ordering = ["name"]
        permissions = [("run_retentionpolicy", _("保存期間ポリシーを実行・試行できる"))]
        constraints = [
            models.CheckConstraint(
                condition=~Q(trigger="consent_withdrawn") | ~Q(consent_purpose=""),
                name="retention_consent_trigger_needs_purpose",
            ),
            models.CheckConstraint(
                condition=Q(batch_size__gte=1) & Q(batch_size__lte=20000), name="retention_batch_size_range"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.trigger == self.Trigger.CONSENT_WITHDRAWN and not self.consent_purpose:
            raise ValidationError(
                {"consent_purpose": _("契機が「同意撤回」のときは利用目的コードを入力してください。")}
            )
        if self.scope in (self.Scope.MARKETING, self.Scope.BEHAVIOURAL) and (
            self.action == self.Action.PSEUDONYMISE
        ):
            raise ValidationError({"action": _("この対象には仮名化を選べません（消去または匿名化）。")})


class LegalHoldQuerySet(RestrictedQuerySet["LegalHold"]):
    """Holds on customers the user may see (crm.permissions); a hold whose customer was erased afterwards
    belongs to no team: the all-customers roles only."""

    gate_customer = "customer"

    def active(self, at: dt.datetime | None = None) -> LegalHoldQuerySet:
        """Holds in force at `at`: not released, and without an end or ending after `at`."""
        at = at or timezone.now()
        return self.filter(Q(released_at__isnull=True) | Q(released_at__gt=at)).filter(
            Q(until__isnull=True) | Q(until__gt=at)
        )


class LegalHold(models.Model):
    """A legal hold (訴訟・税務等による保存義務): while in force, no retention run and no erasure request
    touches the customer (GDPR Art. 17(3)(b)/(e)). The run reports each held customer it skipped.

    `customer` becomes NULL if the customer is later erased after the hold ended, so the record of who held
    what and why survives without pointing at a person.
    """

    class Reason(models.TextChoices):
        TAX_RECORDS = "tax_records", _("税務書類の保存（法人税法：7年）")
        ACCOUNTING = "accounting", _("会計帳簿・重要書類の保存（会社法第432条第2項：10年）")
        LITIGATION = "litigation", _("訴訟・紛争（GDPR第17条第3項(e)）")
        INCIDENT = "incident", _("調査中の漏えい等事案（法第26条）")
        DSAR = "dsar", _("対応中の開示等請求（法第33条〜第35条）")
        OTHER = "other", _("その他の法令上の義務（GDPR第17条第3項(b)）")

    customer = models.ForeignKey(
        "crm.Customer",
        on_delete=models.SET_NULL,
        null=True,
        related_name="legal_holds",
        verbose_name=_("顧客"),
    )
    reason = models.CharField(_("理由"), max_length=20, choices=Reason.choices)
    reference = models.CharField(
        _("参照番号"), max_length=64, blank=True, help_text=_("事件番号・インシデント番号・請求番号など")
    )
    note = models.TextField(_("備考"), blank=True, help_text=_("個人情報を書かないでください。"))
    placed_by = staff_reference(_("設定者"), optional=False)
    placed_at = models.DateTimeField(_("設定日時"), default=timezone.now)
    until = models.DateTimeField(_("保存期限"), null=True, blank=True, help_text=_("空欄は解除まで無期限"))
    released_at = models.DateTimeField(_("解除日時"), null=True, blank=True)
    released_by = staff_reference(_("解除者"))

    objects = LegalHoldQuerySet.as_manager()

    class Meta:
        verbose_name = _("リーガルホールド（保存義務）")
        verbose_name_plural = _("リーガルホールド（保存義務）")
        ordering = ["-placed_at"]
        indexes = [models.Index(fields=["customer", "released_at"], name="legalhold_customer_idx")]

    def __str__(self) -> str:
        return f"リーガルホールド #{self.pk}"

    def is_active(self, at: dt.datetime | None = None) -> bool:
        at = at or timezone.now()
        return (self.released_at is None or self.released_at > at) and (self.until is None or self.until > at)


class RetentionRun(models.Model):
    """One execution of a policy: when, as of which instant, and what it did.

    A run is split into id-range slices walked by chains of short batch tasks; the counts of the run are
    the sums of its slices (each slice is written by one batch transaction at a time, so parallel slices
    never contend on one row). At most one run of a policy is pending or running (constraint below).
    """

    class Status(models.TextChoices):
        RUNNING = "running", _("実行中")
        COMPLETED = "completed", _("完了")
        FAILED = "failed", _("失敗")
        UNSUPPORTED = "unsupported", _("未対応の対象")

    policy = models.ForeignKey(
        RetentionPolicy, on_delete=models.PROTECT, related_name="runs", verbose_name=_("ポリシー")
    )
    status = models.CharField(_("状態"), max_length=12, choices=Status.choices, default=Status.RUNNING)
    as_of = models.DateTimeField(_("基準日時"), help_text=_("契機の日数はこの日時から数えます。"))
    started_at = models.DateTimeField(_("開始日時"), default=timezone.now)
    finished_at = models.DateTimeField(_("終了日時"), null=True, blank=True)
    started_by = staff_reference(_("開始者"), help_text=_("空欄は定期実行（Celery beat）"))
    # Frozen copy of the policy at start: an edit during the run does not change what the run does.
    action = models.CharField(_("処理"), max_length=12, choices=RetentionPolicy.Action.choices)
    scope = models.CharField(_("対象"), max_length=24, choices=RetentionPolicy.Scope.choices)
    trigger = models.CharField(_("契機"), max_length=20, choices=RetentionPolicy.Trigger.choices)
    days = models.PositiveIntegerField(_("日数（N）"))
    consent_purpose = models.CharField(_("利用目的コード"), max_length=64, blank=True)
    batch_size = models.PositiveIntegerField(_("1バッチの件数"))
    examined = models.BigIntegerField(_("確認件数"), default=0)
    erased = models.BigIntegerField(_("消去件数"), default=0)
    anonymised = models.BigIntegerField(_("匿名化件数"), default=0)
    pseudonymised = models.BigIntegerField(_("仮名化件数"), default=0)
    skipped_hold = models.BigIntegerField(_("保存義務により除外"), default=0)
    failed = models.BigIntegerField(_("失敗件数"), default=0)
    failures = models.JSONField(_("失敗理由（件数）"), default=dict, blank=True)
    note = models.TextField(_("備考"), blank=True)

    class Meta:
        verbose_name = _("保存期間ポリシーの実行")
        verbose_name_plural = _("保存期間ポリシーの実行")
        ordering = ["-started_at"]
        constraints = [
            # Two runs of one policy never overlap, whatever the number of beats or admins.
            models.UniqueConstraint(
                fields=["policy"], condition=Q(status="running"), name="retention_one_running_run_per_policy"
            )
        ]

    def __str__(self) -> str:
        return f"実行 #{self.pk}"

    COUNTERS = ("examined", "erased", "anonymised", "pseudonymised", "skipped_hold", "failed")

    def live_counts(self) -> dict[str, int]:
        """Counts summed over the slices (during a run the run row itself is only written at the end)."""
        totals = self.slices.aggregate(**{c: Sum(c) for c in self.COUNTERS})
        return {c: int(totals[c] or 0) for c in self.COUNTERS}

    def frozen_policy(self) -> RetentionPolicy:
        """The policy as it was when the run started (unsaved copy; never written back)."""
        return RetentionPolicy(
            pk=self.policy_id,
            scope=self.scope,
            trigger=self.trigger,
            days=self.days,
            consent_purpose=self.consent_purpose,
            action=self.action,
            batch_size=self.batch_size,
        )

    def progress(self) -> float:
        """Share of the id space walked, 0.0–1.0."""
        span = done = 0
        for lo, hi, cursor in self.slices.values_list("lo", "hi", "cursor"):
            span += hi - lo
            done += min(cursor, hi) - lo
        if self.status != self.Status.RUNNING:
            return 1.0
        return done / span if span else 0.0


class RetentionRunSlice(models.Model):
    """An id range (lo, hi] of customers walked by one chain of batch tasks, with its keyset cursor.

    Each batch locks this row, checks that the cursor is the one its message carries (a message delivered
    twice finds the cursor moved on and does nothing), acts, advances the cursor and adds its counts, all in
    one transaction: a worker killed mid-batch leaves the slice exactly as before that batch.
    """

    run = models.ForeignKey(
        RetentionRun, on_delete=models.CASCADE, related_name="slices", verbose_name=_("実行")
    )
    lo = models.BigIntegerField(_("開始ID（含まない）"))
    hi = models.BigIntegerField(_("終了ID（含む）"))
    cursor = models.BigIntegerField(_("カーソル"))
    done = models.BooleanField(_("完了"), default=False)
    batches = models.IntegerField(_("バッチ数"), default=0)
    heartbeat_at = models.DateTimeField(_("最終更新"), default=timezone.now)
    examined = models.BigIntegerField(default=0)
    erased = models.BigIntegerField(default=0)
    anonymised = models.BigIntegerField(default=0)
    pseudonymised = models.BigIntegerField(default=0)
    skipped_hold = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    failures = models.JSONField(default=dict, blank=True)
    error = models.TextField(_("エラー"), blank=True)

    class Meta:
        verbose_name = _("実行の区間")
        verbose_name_plural = _("実行の区間")
        ordering = ["run", "lo"]

    def __str__(self) -> str:
        return f"区間 {self.lo}–{self.hi}"


class TombstoneQuerySet(RestrictedQuerySet["Tombstone"]):
    """Tombstones name nobody by themselves (a keyed hash): crm.view_tombstone is enough (crm.permissions)."""

    gate_unowned_by_model_permission = True


# A tombstone's links to the policy and the run that wrote it (see Tombstone).
_UNCHECKED_LINK: dict[str, Any] = {
    "on_delete": models.SET_NULL,
    "db_constraint": False,
    "db_index": False,
    "null": True,
    "blank": True,
    "related_name": "+",
}


class Tombstone(models.Model):
    """Proof of one erasure/anonymisation, holding no personal data.

    `subject_hash` is HMAC(tombstone key, customer id): it proves which record was processed to whoever
    holds the key, and lets `manage.py retention_reapply_tombstones` find that record again in a restored
    backup and apply the same action, without the tombstone itself pointing at anybody.
    """

    subject_hash = models.CharField(_("対象ハッシュ"), max_length=64)
    scope = models.CharField(_("対象"), max_length=24, choices=RetentionPolicy.Scope.choices)
    action = models.CharField(_("処理"), max_length=12, choices=RetentionPolicy.Action.choices)
    # No database constraint nor index on these two: a tombstone is written for every erased customer, and
    # the per-row foreign-key checks at commit would cost more than the rows themselves; the proof must
    # outlive the policy and the run anyway.
    policy = models.ForeignKey(RetentionPolicy, verbose_name=_("ポリシー"), **_UNCHECKED_LINK)
    run = models.ForeignKey(RetentionRun, verbose_name=_("実行"), **_UNCHECKED_LINK)
    reason = models.CharField(_("理由"), max_length=64)
    performed_at = models.DateTimeField(_("実施日時"), default=timezone.now)

    objects = TombstoneQuerySet.as_manager()

    class Meta:
        verbose_name = _("消去証跡（トゥームストーン）")
        verbose_name_plural = _("消去証跡（トゥームストーン）")
        ordering = ["-performed_at"]
        constraints = [
            # The same action on the same subject is proven once: re-running a batch adds nothing.
            models.UniqueConstraint(fields=["subject_hash", "scope", "action"], name="tombstone_once")
        ]

    def __str__(self) -> str:
        return f"証跡 {self.subject_hash[:12]}…"


def _register() -> None:
    """Classification, role permissions and audit registration of this area.

    crm's AppConfig.ready() belongs to the foundation; crm.models imports this module while the app
    registry loads, which is early enough for all three (roles are synced on post_migrate).
    """
    from auditlog.registry import auditlog

    grant_role_permissions(
        ROLE_PRIVACY,
        [
            "crm.view_retentionpolicy",
            "crm.add_retentionpolicy",
            "crm.change_retentionpolicy",
            "crm.run_retentionpolicy",
            "crm.view_legalhold",
            "crm.add_legalhold",
            "crm.change_legalhold",
            "crm.view_retentionrun",
            "crm.view_tombstone",
            # The schedule (django-celery-beat) is part of the policy: visible and editable.
            "django_celery_beat.view_periodictask",
            "django_celery_beat.change_periodictask",
            "django_celery_beat.view_crontabschedule",
            "django_celery_beat.add_crontabschedule",
            "django_celery_beat.change_crontabschedule",
            "django_celery_beat.view_intervalschedule",
        ],
    )
    # The request desk places "DSAR in progress" holds and must see why an erasure was refused.
    grant_role_permissions(ROLE_SUPPORT, ["crm.view_legalhold", "crm.add_legalhold"])
    for role in (ROLE_AUDITOR, ROLE_SECURITY):
        grant_role_permissions(role, ["crm.view_retentionrun", "crm.view_tombstone", "crm.view_legalhold"])
    if not auditlog.contains(RetentionPolicy):
        auditlog.register(RetentionPolicy)


_register()
