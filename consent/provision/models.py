"""Recipients of personal data, processors' contracts and audits, cross-border bases, provision records
(APPI 29) and records of receipt (APPI 30), and the data map (systems and flows).

None of the recipient-side models holds a customer's personal data: they are reached with their model
permission alone (the privacy officer's). Provision and receipt records link the people they concern, so
they are behind the customers' gate: a record is visible when one of its people is.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from consent.provision import rules
from crm.classification import DataClass
from crm.fields import staff_reference
from crm.models import Customer
from crm.permissions import ALL, RestrictedQuerySet, scope_kind

# The classes a recipient or system can hold (the registry's personal classes and the derived ones).
DATA_CATEGORY_CHOICES = [(c.value, c.label) for c in DataClass if c != DataClass.NOT_PERSONAL]


class ModelPermissionQuerySet(RestrictedQuerySet[Any]):
    """Rows that name nobody (recipients, contracts, systems): open with the model permission alone."""

    gate_unowned_by_model_permission = True


class Recipient(models.Model):
    """Someone personal data is given to: a processor (委託先, APPI 27(5)(i)), a third party (第三者, APPI
    27(1)), a joint user (共同利用, 27(5)(iii), with the items it requires to be published) or a group
    company.

    `data_categories` are classes of the classification registry; `purposes` the purposes register's.
    A recipient outside Japan needs a cross-border basis (CrossBorderBasis, APPI 28) before anything leaves.
    """

    class Kind(models.TextChoices):
        PROCESSOR = "processor", _("委託先（法第27条5項1号）")
        THIRD_PARTY = "third_party", _("第三者（法第27条1項）")
        JOINT_USE = "joint_use", _("共同利用（法第27条5項3号）")
        GROUP_COMPANY = "group_company", _("グループ会社")

    name = models.CharField(_("名称"), max_length=200, unique=True)
    kind = models.CharField(_("区分"), max_length=20, choices=Kind.choices)
    country = models.CharField(
        _("所在国（ISO 3166-1）"), max_length=2, default="JP", help_text=_("例: JP, US, DE")
    )
    contact = models.CharField(_("窓口（部署・連絡先）"), max_length=300, blank=True)
    data_categories = ArrayField(
        models.CharField(max_length=20, choices=DATA_CATEGORY_CHOICES),
        verbose_name=_("提供するデータの区分"),
        default=list,
        blank=True,
    )
    purposes = models.ManyToManyField(
        "consent.Purpose", blank=True, related_name="+", verbose_name=_("利用目的")
    )
    sub_processing_allowed = models.BooleanField(_("再委託を認める"), default=False)
    sub_processors = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="+", verbose_name=_("再委託先")
    )
    # 共同利用 (APPI 27(5)(iii)): what must be told to the person or made easily available beforehand.
    joint_items = models.TextField(_("共同して利用される個人データの項目"), blank=True)
    joint_scope = models.TextField(_("共同して利用する者の範囲"), blank=True)
    joint_purpose = models.TextField(_("利用する者の利用目的"), blank=True)
    joint_manager = models.TextField(
        _("管理について責任を有する者の氏名又は名称、住所、代表者の氏名"), blank=True
    )
    joint_published_on = models.DateField(_("本人への通知・公表日"), null=True, blank=True)
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    objects = ModelPermissionQuerySet.as_manager()

    class Meta:
        verbose_name = _("提供先・委託先")
        verbose_name_plural = _("提供先・委託先")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def foreign(self) -> bool:
        return rules.is_foreign(self.country)

    def clean(self) -> None:
        self.country = (self.country or "").upper()
        if len(self.country) != 2 or not self.country.isalpha():
            raise ValidationError({"country": _("国コードは2文字（ISO 3166-1）で入力してください。")})
        if self.kind == self.Kind.JOINT_USE:
            missing = {
                n: _("共同利用では必須です（法第27条5項3号）。")
                for n in ("joint_items", "joint_scope", "joint_purpose", "joint_manager")
                if not getattr(self, n)
            }
            if missing:
                raise ValidationError(missing)


class ProcessorContract(models.Model):
    """A contract with a processor (委託契約): the GDPR Art. 28(3) clauses it contains and APPI 25's
    supervision, signed and expiry dates, and where the document is. The latest signed contract counts."""

    recipient = models.ForeignKey(
        Recipient, on_delete=models.CASCADE, related_name="contracts", verbose_name=_("委託先")
    )
    signed_on = models.DateField(_("締結日"))
    expires_on = models.DateField(_("有効期限"), null=True, blank=True, help_text=_("空欄は期限なし"))
    document_ref = models.CharField(_("契約書の参照番号・保管場所"), max_length=200)
    clause_instructions = models.BooleanField(
        _("文書化された指示に基づく処理（第28条3項(a)）"), default=False
    )
    clause_confidentiality = models.BooleanField(_("秘密保持（第28条3項(b)）"), default=False)
    clause_security = models.BooleanField(_("安全管理措置（第28条3項(c)、第32条）"), default=False)
    clause_sub_processors = models.BooleanField(
        _("再委託は承認を得てのみ（第28条2項・3項(d)）"), default=False
    )
    clause_assistance = models.BooleanField(
        _("権利行使・第32〜36条への協力（第28条3項(e)(f)）"), default=False
    )
    clause_deletion_return = models.BooleanField(_("終了時の削除・返却（第28条3項(g)）"), default=False)
    clause_audits = models.BooleanField(_("監査への協力（第28条3項(h)）"), default=False)
    appi_supervision = models.BooleanField(_("委託先の監督（法第25条）"), default=False)
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)

    objects = ModelPermissionQuerySet.as_manager()

    class Meta:
        verbose_name = _("委託契約")
        verbose_name_plural = _("委託契約")
        ordering = ["recipient_id", "-signed_on"]

    def __str__(self) -> str:
        return f"委託契約 #{self.pk}"


class ProcessorAudit(models.Model):
    """An audit (or inspection) of a processor (APPI 25; GDPR Art. 28(3)(h)): when, the result, the findings
    and the next one due."""

    class Result(models.TextChoices):
        SATISFACTORY = "satisfactory", _("適合")
        FINDINGS = "findings", _("指摘事項あり")
        UNSATISFACTORY = "unsatisfactory", _("不適合")

    recipient = models.ForeignKey(
        Recipient, on_delete=models.CASCADE, related_name="audits", verbose_name=_("委託先")
    )
    audited_on = models.DateField(_("実施日"))
    result = models.CharField(_("結果"), max_length=20, choices=Result.choices)
    findings = models.TextField(_("指摘事項"), blank=True)
    next_due_on = models.DateField(_("次回期限"))
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)

    objects = ModelPermissionQuerySet.as_manager()

    class Meta:
        verbose_name = _("委託先の監査")
        verbose_name_plural = _("委託先の監査")
        ordering = ["recipient_id", "-audited_on"]

    def __str__(self) -> str:
        return f"監査 #{self.pk}"


class CrossBorderBasis(models.Model):
    """The basis on file for providing personal data to a recipient abroad (APPI 28; legal-rules.md §4).

    - consent: each person's consent (to `purpose`, a cross-border purpose) after being told the country,
      its regime for personal information and the recipient's measures (規則17);
    - designated country: the PPC designated the recipient's country (規則15–16: EU/EEA, UK);
    - equivalent system: the recipient keeps measures equivalent to APPI's (規則16); checked periodically
      (規則18), so the basis holds only until `next_check_on`.
    """

    class Kind(models.TextChoices):
        CONSENT = rules.XB_CONSENT, _("本人の同意（法第28条1項、規則17）")
        DESIGNATED = rules.XB_DESIGNATED, _("指定国（規則15・16）")
        EQUIVALENT = rules.XB_EQUIVALENT, _("基準に適合する体制（法第28条1項、規則16・18）")

    recipient = models.ForeignKey(
        Recipient, on_delete=models.CASCADE, related_name="transfer_bases", verbose_name=_("提供先")
    )
    kind = models.CharField(_("根拠"), max_length=20, choices=Kind.choices)
    purpose = models.ForeignKey(
        "consent.Purpose",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("同意を得る利用目的"),
    )
    country_regime = models.TextField(_("当該外国の個人情報保護制度"), blank=True)
    recipient_measures = models.TextField(_("提供先が講ずる措置"), blank=True)
    safeguards = models.CharField(
        _("GDPRの移転の根拠（第45〜49条）"), max_length=200, blank=True, help_text=_("例: 十分性認定、SCC")
    )
    last_checked_on = models.DateField(_("最終確認日"), null=True, blank=True)
    next_check_on = models.DateField(_("次回確認期限（規則18）"), null=True, blank=True)
    effective_on = models.DateField(_("適用開始日"))
    withdrawn_on = models.DateField(_("廃止日"), null=True, blank=True)
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)

    objects = ModelPermissionQuerySet.as_manager()

    class Meta:
        verbose_name = _("外国にある第三者への提供の根拠")
        verbose_name_plural = _("外国にある第三者への提供の根拠")
        ordering = ["recipient_id", "-effective_on"]

    def __str__(self) -> str:
        return f"移転根拠 #{self.pk}"

    @property
    def information_given(self) -> bool:
        """規則17(2): the person was told the country, its regime and the recipient's measures."""
        return bool(self.recipient.country and self.country_regime and self.recipient_measures)

    def holds_on(self, on: Any) -> bool:
        if self.effective_on > on:
            return False
        return rules.cross_border_basis_holds(
            kind=self.kind,
            country=self.recipient.country,
            on=on,
            information_given=self.information_given,
            next_check_on=self.next_check_on,
            withdrawn_on=self.withdrawn_on,
        )

    def clean(self) -> None:
        if self.kind == self.Kind.CONSENT and (
            not self.purpose_id or not self.country_regime or not self.recipient_measures
        ):
            raise ValidationError(
                _("同意による場合は、利用目的、外国の制度、提供先の措置の情報が必要です（規則17）。")
            )
        if self.kind == self.Kind.EQUIVALENT and not self.next_check_on:
            raise ValidationError({"next_check_on": _("定期的な確認の期限を入力してください（規則18）。")})


class SubjectLinkedQuerySet(RestrictedQuerySet[Any]):
    """Records linking people (provision and receipt records): visible when one of their people is; a record
    whose people were all erased belongs to no team (the all-customers roles only)."""

    def restrict_rows(self, user: Any, action: str) -> Any:
        kind = scope_kind(user, self.gate_scope_action(action))
        if kind is None:
            return self.none()
        if kind == ALL:
            return self.all()
        subjects = self.model._meta.get_field("subjects").related_model
        visible = Customer.objects.restrict(user, "view").values("pk")
        mine = subjects._default_manager.filter(record=OuterRef("pk"), customer_id__in=visible)
        return self.filter(Exists(mine))


class SubjectQuerySet(RestrictedQuerySet[Any]):
    """Links of a record to a person: visible when the person is (crm.permissions)."""

    gate_customer = "customer"


class ProvisionBasis(models.TextChoices):
    CONSENT = rules.BASIS_CONSENT, _("本人の同意（法第27条1項）")
    OPT_OUT = rules.BASIS_OPT_OUT, _("オプトアウト（個人情報保護委員会へ届出済、法第27条2項）")
    CONTRACT_AS_RECORD = rules.BASIS_CONTRACT_AS_RECORD, _("契約書等による記録の代替（規則19条3項）")
    ENTRUSTMENT = rules.BASIS_ENTRUSTMENT, _("委託に伴う提供（法第27条5項1号）")
    JOINT_USE = rules.BASIS_JOINT_USE, _("共同利用（法第27条5項3号）")


class SubjectLinkedRecord(models.Model):
    """What provision and receipt records share: the basis, when and by whom the record was made, who can
    see it (one of its people, SubjectLinkedQuerySet) and its name (`label` #pk)."""

    label: ClassVar[str]

    basis = models.CharField(_("根拠"), max_length=20, choices=ProvisionBasis.choices)
    created_on = models.DateField(_("作成日"))
    created_by = staff_reference(_("作成者"))
    created_at = models.DateTimeField(_("記録日時"), db_default=Now())

    objects = SubjectLinkedQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.label} #{self.pk}" if self.pk else f"{self.label}（未保存）"


class RecordSubject(models.Model):
    """One person a (provision or receipt) record is about: `record` is the subclass's link to its record."""

    label: ClassVar[str]

    customer = models.ForeignKey(
        "crm.Customer", on_delete=models.CASCADE, related_name="+", verbose_name=_("顧客")
    )

    objects = SubjectQuerySet.as_manager()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.label} #{self.pk}"


class ProvisionRecord(SubjectLinkedRecord):
    """A record of providing personal data to a recipient (第三者提供記録, APPI 29; 規則19–20), written by
    `provision_record` before the data leaves. A batch record (規則19(2)) covers repeated provision to one
    recipient: its last provision date moves on with each. Kept until `keep_until` (規則21), then removed by
    a retention policy (scope 提供記録). The people are linked (ProvisionSubject), so the request desk's
    disclosure package lists them (APPI 33(5))."""

    label = "提供記録"

    recipient = models.ForeignKey(
        Recipient, on_delete=models.PROTECT, related_name="provisions", verbose_name=_("提供先")
    )
    purpose = models.ForeignKey(
        "consent.Purpose",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("同意の利用目的"),
    )
    opt_out_notified_on = models.DateField(_("個人情報保護委員会への届出日"), null=True, blank=True)
    contract = models.ForeignKey(
        ProcessorContract,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("記録に代える契約"),
    )
    data_items = ArrayField(models.CharField(max_length=120), verbose_name=_("提供した項目"))
    first_provided_on = models.DateField(_("提供日（初回）"))
    last_provided_on = models.DateField(_("提供日（最終）"))
    batch = models.BooleanField(_("一括記録（継続・反復の提供、規則19条2項）"), default=False)
    provisions = models.PositiveIntegerField(_("提供の回数"), default=1)
    keep_until = models.DateField(_("保存期限（規則21）"))
    customers: models.ManyToManyField[Customer, ProvisionSubject] = models.ManyToManyField(
        "crm.Customer", through="ProvisionSubject", related_name="+", verbose_name=_("本人")
    )

    class Meta(SubjectLinkedRecord.Meta):
        verbose_name = _("第三者提供記録（法第29条）")
        verbose_name_plural = _("第三者提供記録（法第29条）")
        indexes = [models.Index(fields=["keep_until"], name="provision_keep_until_idx")]


class ProvisionSubject(RecordSubject):
    """One person a provision record is about. Erasing the person removes the link (the record stays)."""

    label = "提供記録の本人"

    record = models.ForeignKey(
        ProvisionRecord, on_delete=models.CASCADE, related_name="subjects", verbose_name=_("提供記録")
    )

    class Meta:
        verbose_name = _("提供記録の本人")
        verbose_name_plural = _("提供記録の本人")
        constraints = [models.UniqueConstraint(fields=["customer", "record"], name="uniq_provision_subject")]


class ReceiptRecord(SubjectLinkedRecord):
    """A record of receiving personal data from a third party (APPI 30; 規則22–24): who provided it (name,
    address, representative), how the provider acquired it (取得の経緯, confirmed under 30(1)), the items and
    the people. Kept for the same periods as provision records (規則24)."""

    label = "受領記録"

    provider_name = models.CharField(_("提供者の氏名又は名称"), max_length=200)
    provider_address = models.CharField(_("提供者の住所"), max_length=300)
    provider_representative = models.CharField(_("法人の代表者の氏名"), max_length=200, blank=True)
    acquisition = models.TextField(_("提供者による取得の経緯（法第30条1項2号）"))
    data_items = ArrayField(models.CharField(max_length=120), verbose_name=_("受領した項目"))
    received_on = models.DateField(_("受領日"))
    keep_until = models.DateField(_("保存期限（規則24）"))
    customers: models.ManyToManyField[Customer, ReceiptSubject] = models.ManyToManyField(
        "crm.Customer", through="ReceiptSubject", related_name="+", verbose_name=_("本人")
    )

    class Meta(SubjectLinkedRecord.Meta):
        verbose_name = _("第三者からの受領記録（法第30条）")
        verbose_name_plural = _("第三者からの受領記録（法第30条）")
        indexes = [models.Index(fields=["keep_until"], name="receipt_keep_until_idx")]


class ReceiptSubject(RecordSubject):
    """One person a receipt record is about."""

    label = "受領記録の本人"

    record = models.ForeignKey(
        ReceiptRecord, on_delete=models.CASCADE, related_name="subjects", verbose_name=_("受領記録")
    )

    class Meta:
        verbose_name = _("受領記録の本人")
        verbose_name_plural = _("受領記録の本人")
        constraints = [models.UniqueConstraint(fields=["customer", "record"], name="uniq_receipt_subject")]


class DataSystem(models.Model):
    """A system holding customer data (this CRM, the e-mail tool, analytics, POS, backups …) on the data
    map: where it runs, its data owner (データオーナー) and steward, and the classes of data it holds. For
    this CRM (`is_this_crm`) the classes are read from the classification registry, never typed here."""

    name = models.CharField(_("名称"), max_length=200, unique=True)
    is_this_crm = models.BooleanField(
        _("このCRM"), default=False, help_text=_("保有するデータの区分は分類レジストリから読みます。")
    )
    location = models.CharField(_("設置場所（データセンター・クラウド）"), max_length=200)
    country = models.CharField(_("所在国（ISO 3166-1）"), max_length=2, default="JP")
    data_owner = models.CharField(_("データオーナー"), max_length=200)
    steward = models.CharField(_("データスチュワード"), max_length=200, blank=True)
    data_categories = ArrayField(
        models.CharField(max_length=20, choices=DATA_CATEGORY_CHOICES),
        verbose_name=_("保有するデータの区分"),
        default=list,
        blank=True,
    )
    security_measures = models.TextField(_("安全管理措置"), blank=True)
    recipient = models.ForeignKey(
        Recipient,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="systems",
        verbose_name=_("運用する委託先"),
    )

    objects = ModelPermissionQuerySet.as_manager()

    class Meta:
        verbose_name = _("システム（データマップ）")
        verbose_name_plural = _("システム（データマップ）")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_this_crm"], condition=models.Q(is_this_crm=True), name="one_crm_system"
            )
        ]

    def __str__(self) -> str:
        return self.name


class DataFlow(models.Model):
    """A flow of customer data from a system to another system or to a recipient: what for, how often."""

    class Frequency(models.TextChoices):
        REALTIME = "realtime", _("随時（リアルタイム）")
        DAILY = "daily", _("日次")
        WEEKLY = "weekly", _("週次")
        MONTHLY = "monthly", _("月次")
        AD_HOC = "ad_hoc", _("都度")

    source = models.ForeignKey(
        DataSystem, on_delete=models.CASCADE, related_name="flows_out", verbose_name=_("送信元システム")
    )
    target_system = models.ForeignKey(
        DataSystem,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="flows_in",
        verbose_name=_("送信先システム"),
    )
    target_recipient = models.ForeignKey(
        Recipient,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="flows_in",
        verbose_name=_("送信先（提供先）"),
    )
    purpose = models.ForeignKey(
        "consent.Purpose", on_delete=models.PROTECT, related_name="+", verbose_name=_("利用目的")
    )
    frequency = models.CharField(_("頻度"), max_length=10, choices=Frequency.choices)
    data_categories = ArrayField(
        models.CharField(max_length=20, choices=DATA_CATEGORY_CHOICES),
        verbose_name=_("データの区分"),
        default=list,
        blank=True,
    )
    description = models.CharField(_("説明"), max_length=300, blank=True)

    objects = ModelPermissionQuerySet.as_manager()

    class Meta:
        verbose_name = _("データの流れ（データマップ）")
        verbose_name_plural = _("データの流れ（データマップ）")
        ordering = ["source_id", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(target_system__isnull=False, target_recipient__isnull=True)
                | models.Q(target_system__isnull=True, target_recipient__isnull=False),
                name="dataflow_one_target",
            )
        ]

    def __str__(self) -> str:
        return f"データの流れ #{self.pk}"

    def clean(self) -> None:
        if (self.target_system_id is None) == (self.target_recipient_id is None):
            raise ValidationError(_("送信先はシステムか提供先のどちらか一つを選んでください。"))
