"""Models of the analytics area: purchase import batches, RFM runs and scores, CLV fits and scores.

Scores point to customers, so their querysets are behind the gate (crm.permissions): a score is reachable
when its customer is. Runs and fits hold parameters and counts only (no personal data).
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from crm.analytics import field_classes  # noqa: F401  (declares the fields)
from crm.fields import staff_reference
from crm.permissions import ROLE_PRIVACY, ROLE_STAFF, RestrictedQuerySet
from crm.roles import grant_role_permissions

__all__ = ["ClvFit", "ClvScore", "PurchaseImport", "RfmRun", "RfmScore"]


class PurchaseImportQuerySet(RestrictedQuerySet["PurchaseImport"]):
    """Import batches, reachable with their team's customers (a batch names the team it imported into)."""

    gate_team = "team"


class PurchaseImport(models.Model):
    """One import of a purchases CSV into a team: its progress and its outcome (counts, and the line
    numbers and codes of refused rows — never a value of the file)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("待機中")
        RUNNING = "running", _("取込中")
        DONE = "done", _("完了")
        REFUSED = "refused", _("全件取消（誤りのある行あり）")
        FAILED = "failed", _("失敗")

    team = models.ForeignKey(
        "crm.Team", on_delete=models.PROTECT, related_name="+", verbose_name=_("取込先チーム")
    )
    created_by = staff_reference(_("実行者"), on_delete=models.SET_NULL)
    file_name = models.CharField(_("ファイル名"), max_length=200, blank=True)
    all_or_nothing = models.BooleanField(_("誤りがあれば全件取り消す"), default=False)
    status = models.CharField(_("状態"), max_length=10, choices=Status.choices, default=Status.PENDING)
    bytes_total = models.BigIntegerField(_("ファイルサイズ（バイト）"), default=0)
    bytes_read = models.BigIntegerField(_("読込済み（バイト）"), default=0)
    rows_total = models.BigIntegerField(_("行数"), default=0)
    rows_inserted = models.BigIntegerField(_("登録した購買"), default=0)
    rows_duplicate = models.BigIntegerField(_("登録済みのため省いた行"), default=0)
    rows_invalid = models.BigIntegerField(_("誤りのある行"), default=0)
    customers_created = models.BigIntegerField(_("新規作成した顧客"), default=0)
    # [{"line": 12, "field": "amount", "code": "invalid_amount"}, …], the first IMPORT_ERRORS_KEPT only.
    errors = models.JSONField(_("誤りのある行（先頭のみ）"), default=list, blank=True)
    created_at = models.DateTimeField(_("登録日時"), auto_now_add=True)
    started_at = models.DateTimeField(_("開始日時"), null=True, blank=True)
    finished_at = models.DateTimeField(_("終了日時"), null=True, blank=True)

    objects = PurchaseImportQuerySet.as_manager()

    class Meta:
        verbose_name = _("購買データの取込")
        verbose_name_plural = _("購買データの取込")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"購買取込 #{self.pk}" if self.pk else "購買取込（未保存）"


class RfmRun(models.Model):
    """One computation of RFM scores for every eligible customer at once (as of `as_of`, quantiles of
    `bins` groups), stored in one of two slots (partitions of the score table made by a migration): a run
    fills the slot the newest run does not use and becomes the newest when it commits, together with its
    scores, so readers switch from one complete run to the next. A run's rows never change after it is
    written; the run before last is dropped when its slot is refilled (crm.analytics.services)."""

    as_of = models.DateField(_("基準日"))
    bins = models.PositiveSmallIntegerField(_("分位数"), default=5)
    purpose_code = models.CharField(_("利用目的コード"), max_length=64, default="analytics")
    method = models.CharField(_("分位の決め方"), max_length=10, default="ntile")
    customers = models.BigIntegerField(_("対象顧客数"), default=0)
    # {"r": {"5": [min, max], …}, "f": …, "m": …}: the input range behind each score (explanations).
    boundaries = models.JSONField(_("スコアごとの値の範囲"), default=dict, blank=True)
    computed_at = models.DateTimeField(_("計算日時"), auto_now_add=True)
    seconds = models.FloatField(_("所要時間（秒）"), default=0)
    slot = models.PositiveSmallIntegerField(_("格納スロット"), default=0)

    class Meta:
        verbose_name = _("RFM計算")
        verbose_name_plural = _("RFM計算")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"RFM #{self.pk}（{self.as_of}）"


class RfmScoreQuerySet(RestrictedQuerySet["RfmScore"]):
    """RFM scores: reachable when their customer is (the gate's customer subquery)."""

    gate_customer = "customer"


class RfmScore(models.Model):
    """A customer's RFM values and scores in one run: recency in days since the last purchase day,
    frequency as distinct purchase days, monetary as the total spend; scores 1..bins (higher is better,
    for recency too: a recent buyer scores high) and the named segment (crm.analytics.rules.rfm_segment)."""

    class Segment(models.TextChoices):
        CHAMPIONS = "champions", _("優良顧客")
        LOYAL = "loyal", _("ロイヤル顧客")
        POTENTIAL = "potential", _("育成候補")
        NEW = "new", _("新規顧客")
        PROMISING = "promising", _("有望顧客")
        NEED_ATTENTION = "need_attention", _("要注意")
        AT_RISK = "at_risk", _("離反の恐れ")
        CANNOT_LOSE = "cannot_lose", _("失えない顧客")
        HIBERNATING = "hibernating", _("休眠顧客")
        LOST = "lost", _("離反顧客")

    # The table is partitioned by `slot` (crm migration 0027: crm_rfmscore_s0 and _s1, one run each).
    # Neither link has a foreign-key constraint, whose per-row checks cost a run about 10 s (bench/README.md):
    # a slot holds one run, and the run row is deleted only once its slot was emptied (services.rfm_compute);
    # a customer's deletion deletes their scores in the database (the statement trigger of migration 0027,
    # besides the ORM's and erasure's own cascade), and waits while a run fills its slot (the run locks it),
    # so a score never outlives its customer. The ORM still cascades a run's deletion to its scores.
    run = models.ForeignKey(
        RfmRun,
        on_delete=models.CASCADE,
        related_name="scores",
        verbose_name=_("計算"),
        db_constraint=False,
        db_index=False,
    )
    customer = models.ForeignKey(
        "crm.Customer",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("顧客"),
        db_constraint=False,
        db_index=False,
    )
    recency_days = models.IntegerField(_("最終購買からの日数"))
    frequency = models.IntegerField(_("購買日数"))
    monetary = models.DecimalField(_("購買金額合計"), max_digits=16, decimal_places=2)
    r_score = models.PositiveSmallIntegerField(_("Rスコア"))
    f_score = models.PositiveSmallIntegerField(_("Fスコア"))
    m_score = models.PositiveSmallIntegerField(_("Mスコア"))
    segment = models.CharField(_("セグメント"), max_length=16, choices=Segment.choices)
    slot = models.PositiveSmallIntegerField(_("格納スロット"))

    objects = RfmScoreQuerySet.as_manager()

    class Meta:
        verbose_name = _("RFMスコア")
        verbose_name_plural = _("RFMスコア")
        # One index besides the primary key (id, slot): a customer's scores (erasure, disclosure), one per
        # run. Readers of a run's scores filter on its slot, which PostgreSQL prunes to one partition.
        constraints = [
            models.UniqueConstraint(fields=["customer", "run", "slot"], name="uniq_rfm_customer_run_slot")
        ]

    def __str__(self) -> str:
        return f"RFMスコア #{self.pk}"


class ClvFit(models.Model):
    """One fit of BG/NBD (Fader, Hardie & Lee 2005a) and Gamma-Gamma (Fader, Hardie & Lee 2005b) by maximum
    likelihood on the purchases up to `calibration_end`, with the parameters, the data date and the
    settings of the per-customer predictions (horizon in periods, annual discount rate)."""

    class TimeUnit(models.TextChoices):
        DAY = "day", _("日")
        WEEK = "week", _("週")

    calibration_end = models.DateField(_("推定期間の終了日"))
    time_unit = models.CharField(_("時間単位"), max_length=4, choices=TimeUnit.choices, default=TimeUnit.WEEK)
    purpose_code = models.CharField(_("利用目的コード"), max_length=64, default="analytics")
    customers = models.BigIntegerField(_("対象顧客数"), default=0)
    r = models.FloatField("r")
    alpha = models.FloatField("alpha")
    a = models.FloatField("a")
    b = models.FloatField("b")
    log_likelihood = models.FloatField(_("対数尤度（BG/NBD）"))
    gg_customers = models.BigIntegerField(_("Gamma-Gamma の対象顧客数"), default=0)
    p = models.FloatField("p", null=True, blank=True)
    q = models.FloatField("q", null=True, blank=True)
    v = models.FloatField("v", null=True, blank=True)
    gg_log_likelihood = models.FloatField(_("対数尤度（Gamma-Gamma）"), null=True, blank=True)
    horizon = models.PositiveIntegerField(_("予測期間（時間単位）"), default=52)
    discount_rate = models.FloatField(_("割引率（年率）"), default=0.1)
    # {"holdout_end": "…", "customers": n, "predicted": x, "actual": y} when a holdout period was checked.
    holdout = models.JSONField(_("検証期間の比較"), default=dict, blank=True)
    fitted_at = models.DateTimeField(_("推定日時"), auto_now_add=True)
    seconds = models.FloatField(_("所要時間（秒）"), default=0)

    class Meta:
        verbose_name = _("CLV推定")
        verbose_name_plural = _("CLV推定")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"CLV推定 #{self.pk}（{self.calibration_end}）"


class ClvScoreQuerySet(RestrictedQuerySet["ClvScore"]):
    """CLV scores: reachable when their customer is (the gate's customer subquery)."""

    gate_customer = "customer"


class ClvScore(models.Model):
    """A customer's CLV inputs (frequency, recency, T, mean repeat spend, in the fit's time unit) and
    predictions: expected purchases in the fit's horizon, P(alive), expected spend per purchase and the
    discounted expected CLV."""

    # No single-column indexes: uniq_clv_fit_customer (fit, customer) and clv_customer_fit_idx (customer,
    # fit) lead with each of them, and a fit stores a million rows at once.
    fit = models.ForeignKey(
        ClvFit, on_delete=models.CASCADE, related_name="scores", verbose_name=_("推定"), db_index=False
    )
    customer = models.ForeignKey(
        "crm.Customer", on_delete=models.CASCADE, related_name="+", verbose_name=_("顧客"), db_index=False
    )
    frequency = models.IntegerField(_("リピート購買回数（x）"))
    recency = models.FloatField(_("初回から最終購買まで（t_x）"))
    age = models.FloatField(_("初回購買から推定期間終了まで（T）"))
    monetary = models.DecimalField(_("リピート購買の平均金額"), max_digits=16, decimal_places=2)
    expected_purchases = models.FloatField(_("予測購買回数"))
    p_alive = models.FloatField(_("継続確率 P(alive)"))
    expected_spend = models.DecimalField(_("予測平均購買金額"), max_digits=16, decimal_places=2)
    clv = models.DecimalField(_("予測CLV"), max_digits=16, decimal_places=2)

    objects = ClvScoreQuerySet.as_manager()

    class Meta:
        verbose_name = _("CLVスコア")
        verbose_name_plural = _("CLVスコア")
        constraints = [models.UniqueConstraint(fields=["fit", "customer"], name="uniq_clv_fit_customer")]
        indexes = [models.Index(fields=["customer", "fit"], name="clv_customer_fit_idx")]

    def __str__(self) -> str:
        return f"CLVスコア #{self.pk}"


def _register() -> None:
    """Classification and role permissions of this area (crm.models imports this module while the registry
    loads; roles are synced on post_migrate)."""
    # Team staff import their team's purchases and read their team's scores (masked without the PII
    # permission); the privacy officer reads every score, in clear, and the fairness report.
    grant_role_permissions(
        ROLE_STAFF,
        ["crm.view_purchaseimport", "crm.add_purchaseimport", "crm.view_rfmscore", "crm.view_clvscore"],
    )
    grant_role_permissions(
        ROLE_PRIVACY, ["crm.view_purchaseimport", "crm.view_rfmscore", "crm.view_clvscore"]
    )


_register()
