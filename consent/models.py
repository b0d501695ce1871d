"""Purposes of use (利用目的) and the consent ledger.

Purposes are versioned: the text a person saw is a `PurposeVersion`, never edited once written. Every grant or
withdrawal is one `ConsentEvent` row; the database refuses UPDATE and DELETE on the ledger (trigger in
migration 0002_ledger_guard), so the proof of what the person saw and when cannot be rewritten.
`ConsentState` is the current state per customer × purpose, kept in the same transaction as the ledger row,
so "who may be used for this purpose right now" is one indexed lookup instead of a scan of the ledger.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from consent.rules import opt_in_required
from crm.fields import EncryptedCharField, EncryptedTextField, outliving_customer_reference, staff_reference
from crm.permissions import RestrictedQuerySet
from crm.rawsql import ConstantInsert
from crm.validators import validate_no_my_number

M = TypeVar("M", bound=models.Model)


class LedgerImmutableError(RuntimeError):
    """An attempt to change or delete a ledger row (or a purpose version)."""


class AppendOnlyQuerySet(RestrictedQuerySet[M]):
    """An append-only ledger behind the gate: the ORM refuses bulk changes (the database trigger refuses the
    rest). `ledger_name` names the ledger in the refusal."""

    ledger_name: ClassVar[str] = "台帳"

    def update(self, **kwargs: Any) -> int:
        raise LedgerImmutableError(f"{self.ledger_name}は追記のみです。一括更新はできません。")

    def delete(self) -> Any:
        raise LedgerImmutableError(f"{self.ledger_name}は追記のみです。一括削除はできません。")

    def bulk_update(self, *args: Any, **kwargs: Any) -> int:
        raise LedgerImmutableError(f"{self.ledger_name}は追記のみです。一括更新はできません。")


class ConsentLedgerQuerySet(AppendOnlyQuerySet["ConsentEvent"]):
    """The ledger behind the gate: rows about customers the user may see (crm.permissions); visitor-only rows
    and rows of erased customers belong to no team, so only the all-customers roles reach them."""

    gate_customer = "customer"
    ledger_name = "同意台帳"


class LegalBasis(models.TextChoices):
    CONSENT = "consent", _("本人の同意（GDPR第6条1項(a)）")
    CONTRACT = "contract", _("契約の履行（GDPR第6条1項(b)）")
    LEGAL_OBLIGATION = "legal_obligation", _("法的義務（GDPR第6条1項(c)）")
    LEGITIMATE_INTEREST = "legitimate_interest", _("正当な利益（GDPR第6条1項(f)）")


class PurposeCategory(models.TextChoices):
    CUSTOMER_MANAGEMENT = "customer_management", _("顧客管理・契約履行")
    SUPPORT = "support", _("問合せ対応")
    MARKETING_EMAIL = "marketing_email", _("メールマガジン・販促メール")
    PERSONALISATION = "personalisation", _("パーソナライズ")
    ANALYTICS = "analytics", _("分析")
    COOKIES = "cookies", _("Cookie等の利用（法第31条 個人関連情報）")
    THIRD_PARTY = "third_party_provision", _("第三者提供（法第27条）")
    CROSS_BORDER = "cross_border_transfer", _("外国にある第三者への提供（法第28条）")
    SPECIAL_CARE = "special_care", _("要配慮個人情報の取得（法第20条第2項）")


class Purpose(models.Model):
    """A purpose of use (利用目的, APPI Art. 17) published under APPI Arts. 21/32.

    The wording lives in `PurposeVersion`: a change of text makes a new version (services.purpose_revise) and
    the old ones stay readable forever, because a consent row points at the exact version the person saw.
    """

    code = models.SlugField(_("コード"), max_length=50, unique=True)
    category = models.CharField(_("区分"), max_length=30, choices=PurposeCategory.choices)
    legal_basis = models.CharField(_("法的根拠"), max_length=30, choices=LegalBasis.choices)
    is_published = models.BooleanField(
        _("公表する"),
        default=True,
        help_text=_("公表ページ（法第21条・第32条）に掲載し、同意を受け付けます。"),
    )
    display_order = models.PositiveSmallIntegerField(_("表示順"), default=100)
    current_version = models.ForeignKey(
        "PurposeVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("現行版"),
    )
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    class Meta:
        verbose_name = _("利用目的")
        verbose_name_plural = _("利用目的")
        ordering = ["display_order", "code"]

    def __str__(self) -> str:
        title = self.current_version.title_ja if self.current_version_id and self.current_version else ""
        return f"{self.code}（{title}）" if title else self.code

    @property
    def requires_opt_in(self) -> bool:
        return opt_in_required(self.category)


class PurposeVersion(models.Model):
    """One immutable wording of a purpose: the text a person was shown when consenting (GDPR Art. 7(1)).

    `text_hash` (SHA-256 of the canonical texts) is what a consent row's evidence refers to; the database
    refuses UPDATE and DELETE of versions just as it does for the ledger.
    """

    purpose = models.ForeignKey(
        Purpose, on_delete=models.PROTECT, related_name="versions", verbose_name=_("利用目的")
    )
    version = models.PositiveIntegerField(_("版"))
    title_ja = models.CharField(_("名称（日本語）"), max_length=200)
    title_en = models.CharField(_("名称（英語）"), max_length=200)
    description_ja = models.TextField(_("説明（日本語）"))
    description_en = models.TextField(_("説明（英語）"))
    legal_basis = models.CharField(_("法的根拠"), max_length=30, choices=LegalBasis.choices)
    text_hash = models.CharField(_("文面ハッシュ（SHA-256）"), max_length=64, editable=False)
    basis_change_reason = models.TextField(
        _("法的根拠の変更の判断"),
        blank=True,
        default="",
        help_text=_("同意が記録されている利用目的の法的根拠を同意以外に変える場合の、記録された判断。"),
    )
    created_by = staff_reference(_("作成者"))
    created_at = models.DateTimeField(_("作成日時"), db_default=Now())

    class Meta:
        verbose_name = _("利用目的の版")
        verbose_name_plural = _("利用目的の版")
        ordering = ["purpose_id", "-version"]
        constraints = [models.UniqueConstraint(fields=["purpose", "version"], name="uniq_purpose_version")]

    def __str__(self) -> str:
        return f"{self.purpose.code} v{self.version}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise LedgerImmutableError("利用目的の版は変更できません。文面の変更は新しい版として登録します。")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise LedgerImmutableError("利用目的の版は削除できません（過去の同意の証跡です）。")


class ConsentEvent(ConstantInsert, models.Model):
    """One grant or withdrawal of consent: the append-only ledger (GDPR Art. 7(1) "demonstrate consent").

    Either a customer or an anonymous visitor id (cookie banner before login). When the visitor is identified,
    services.visitor_link appends copies for the customer pointing back at the visitor's row
    (`source_event`): nothing is ever updated. `occurred_at` is when the person acted; `recorded_at` is set
    by the database clock. Evidence: the form, the hash of the text shown, source address and user agent
    (encrypted, they are personal data) and the operator for staff-entered consent.

    When the person is erased or anonymised, the row stays as proof (purpose, version, action, times) but
    its personal evidence (address, user agent, cookie id) is emptied and replaced by a keyed hash
    (`evidence_hash`, `erased_at`): the one change the database trigger lets through (migration 0006).
    """

    class Action(models.TextChoices):
        GRANT = "grant", _("同意")
        WITHDRAW = "withdraw", _("撤回")

    class Method(models.TextChoices):
        OPT_IN = "opt_in", _("オプトイン（明示の同意）")
        OPT_OUT = "opt_out", _("オプトアウト")

    class Channel(models.TextChoices):
        WEB_FORM = "web_form", _("Webフォーム")
        COOKIE_BANNER = "cookie_banner", _("Cookieバナー")
        APP = "app", _("アプリ")
        STORE_POS = "store_pos", _("店舗・POS")
        PAPER = "paper", _("書面")
        CALL_CENTRE = "call_centre", _("コールセンター")
        API = "api", _("API連携")

    # The proof outlives the customer (kept to demonstrate consent, GDPR Art. 7(1), 17(3)(e)): erasing the
    # customer deletes their row but never touches the ledger.
    customer = outliving_customer_reference(
        _("顧客"),
        null=True,
        blank=True,
        # Covered by consent_customer_hist_idx (customer first). Each index of a multi-million-row
        # append-only table costs on every insert: only indexes some query uses are kept.
        db_index=False,
    )
    visitor_id = models.CharField(_("訪問者ID"), max_length=64, blank=True)
    purpose = models.ForeignKey(
        Purpose, on_delete=models.PROTECT, related_name="+", verbose_name=_("利用目的"), db_index=False
    )
    purpose_version = models.ForeignKey(
        PurposeVersion,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("提示した版"),
        db_index=False,
    )
    action = models.CharField(_("操作"), max_length=10, choices=Action.choices)
    method = models.CharField(_("方式"), max_length=10, choices=Method.choices)
    channel = models.CharField(_("経路"), max_length=20, choices=Channel.choices)
    form_id = models.CharField(_("フォームID"), max_length=100, blank=True)
    text_hash = models.CharField(_("提示文面のハッシュ"), max_length=64)
    source_ip = EncryptedCharField(_("送信元IPアドレス"), max_length=45, blank=True)
    user_agent = EncryptedCharField(_("ユーザーエージェント"), max_length=500, blank=True)
    operator = staff_reference(_("入力した従業者"), db_index=False)
    api_client_id = models.BigIntegerField(_("APIクライアントID"), null=True, blank=True)
    source_event = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("紐付け元（訪問者の同意）"),
        db_index=False,
    )
    occurred_at = models.DateTimeField(_("同意・撤回の日時"))
    recorded_at = models.DateTimeField(_("記録日時"), db_default=Now())
    # Erasure of the person (services.consent_evidence_erase, the one UPDATE the database allows): the
    # evidence columns above are emptied, their keyed hash is kept here and the instant is recorded.
    evidence_hash = models.CharField(
        _("証跡の鍵付きハッシュ（消去時）"), max_length=64, blank=True, default=""
    )
    erased_at = models.DateTimeField(_("証跡の消去日時"), null=True, blank=True)

    objects = ConsentLedgerQuerySet.as_manager()

    class Meta:
        verbose_name = _("同意台帳")
        verbose_name_plural = _("同意台帳")
        ordering = ["-id"]
        indexes = [
            # History of one customer, and the DISTINCT ON fallback / rebuild of ConsentState.
            models.Index(
                fields=["customer", "purpose", "-occurred_at", "-id"],
                name="consent_customer_hist_idx",
                condition=models.Q(customer__isnull=False),
            ),
            models.Index(
                fields=["visitor_id", "purpose", "-occurred_at", "-id"],
                name="consent_visitor_hist_idx",
                condition=~models.Q(visitor_id=""),
            ),
            models.Index(fields=["recorded_at"], name="consent_recorded_idx"),
        ]
        constraints = [
            # A row names its subject, until erasure clears the cookie id of an anonymous visitor's row.
            models.CheckConstraint(
                condition=models.Q(customer__isnull=False)
                | ~models.Q(visitor_id="")
                | models.Q(erased_at__isnull=False),
                name="consent_event_has_subject",
            ),
        ]

    def __str__(self) -> str:
        return f"同意台帳 #{self.pk}" if self.pk else "同意台帳（未保存）"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Append-only: the ORM refuses a second save; the database trigger refuses everything else.
        if self.pk is not None and not kwargs.get("force_insert"):
            raise LedgerImmutableError(
                "同意台帳は追記のみです。記録済みの行は変更できません（GDPR第7条1項）。"
            )
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise LedgerImmutableError("同意台帳は追記のみです。記録済みの行は削除できません（GDPR第7条1項）。")


class ConsentStateQuerySet(RestrictedQuerySet["ConsentState"]):
    """Current states of customers the user may see (crm.permissions)."""

    gate_customer = "customer"


class ConsentState(models.Model):
    """Current consent of one customer for one purpose: the latest ledger row by (occurred_at, id).

    Written only by services.consent_record in the same statement as the ledger row (an upsert that keeps
    the newer event), so it can always be rebuilt from the ledger and never disagrees with it.
    """

    customer = models.ForeignKey(
        "crm.Customer", on_delete=models.CASCADE, related_name="+", verbose_name=_("顧客"), db_index=False
    )
    purpose = models.ForeignKey(
        Purpose, on_delete=models.PROTECT, related_name="+", verbose_name=_("利用目的"), db_index=False
    )
    granted = models.BooleanField(_("同意あり"))
    event = models.ForeignKey(
        ConsentEvent,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("根拠となる台帳行"),
        db_index=False,
    )
    version = models.PositiveIntegerField(_("版"))
    channel = models.CharField(_("経路"), max_length=20, choices=ConsentEvent.Channel.choices)
    occurred_at = models.DateTimeField(_("同意・撤回の日時"))

    objects = ConsentStateQuerySet.as_manager()

    class Meta:
        # No single-column FK indexes: the unique (customer, purpose) and the granted (purpose, customer)
        # indexes serve every lookup, and the ledger rows it points at are never deleted.
        verbose_name = _("同意状態（現在）")
        verbose_name_plural = _("同意状態（現在）")
        constraints = [
            models.UniqueConstraint(fields=["customer", "purpose"], name="uniq_consent_state"),
        ]
        indexes = [
            # consented_to(code): the granted customers of one purpose, answered from the index alone.
            models.Index(
                fields=["purpose", "customer"],
                name="consent_state_granted_idx",
                condition=models.Q(granted=True),
            ),
        ]

    def __str__(self) -> str:
        return f"同意状態 #{self.pk}"


class VisitorLinkQuerySet(RestrictedQuerySet["VisitorLink"]):
    """Visitor links of customers the user may see (crm.permissions)."""

    gate_customer = "customer"


class SpecialCareRecordQuerySet(RestrictedQuerySet["SpecialCareRecord"]):
    """要配慮個人情報 of customers the user may see (crm.permissions), with consent.view_specialcarerecord."""

    gate_customer = "customer"


class VisitorLink(models.Model):
    """An anonymous visitor id identified as a customer (login, app pairing). Never changed; deleted only
    with the customer (erasure), which also severs the cookie id from the person."""

    visitor_id = models.CharField(_("訪問者ID"), max_length=64, unique=True)
    # Erasing the customer removes the link between the cookie id and the person.
    customer = models.ForeignKey(
        "crm.Customer", on_delete=models.CASCADE, related_name="+", verbose_name=_("顧客")
    )
    linked_by = staff_reference(_("操作者"))
    linked_at = models.DateTimeField(_("紐付け日時"), db_default=Now())

    objects = VisitorLinkQuerySet.as_manager()

    class Meta:
        verbose_name = _("訪問者IDの紐付け")
        verbose_name_plural = _("訪問者IDの紐付け")

    def __str__(self) -> str:
        return f"訪問者紐付け #{self.pk}"


class SpecialCareRecord(models.Model):
    """要配慮個人情報 (APPI Art. 2(3)) about a customer, e.g. an allergy noted for a health-food order.

    Written only by services.special_care_record_create, which refuses unless the customer's current consent
    for a special-care purpose is granted (APPI Art. 20(2): prior consent, never by opt-out). The content
    is encrypted at rest; `consent_event` points at the ledger row that authorised the acquisition.
    """

    class Kind(models.TextChoices):
        MEDICAL_HISTORY = "medical_history", _("病歴")
        HEALTH_CHECK = "health_check", _("健康診断等の結果")
        DISABILITY = "disability", _("心身の機能の障害")
        CREED = "creed", _("信条")
        OTHER = "other", _("その他の要配慮個人情報")

    customer = models.ForeignKey(
        "crm.Customer", on_delete=models.CASCADE, related_name="+", verbose_name=_("顧客")
    )
    purpose = models.ForeignKey(
        Purpose, on_delete=models.PROTECT, related_name="+", verbose_name=_("利用目的")
    )
    consent_event = models.ForeignKey(
        ConsentEvent, on_delete=models.PROTECT, related_name="+", verbose_name=_("同意の記録")
    )
    kind = models.CharField(_("種類"), max_length=20, choices=Kind.choices)
    content = EncryptedTextField(_("内容"), validators=[validate_no_my_number])
    recorded_by = staff_reference(_("記録者"))
    created_at = models.DateTimeField(_("登録日時"), auto_now_add=True)

    objects = SpecialCareRecordQuerySet.as_manager()

    class Meta:
        verbose_name = _("要配慮個人情報")
        verbose_name_plural = _("要配慮個人情報")

    def __str__(self) -> str:
        return f"要配慮個人情報 #{self.pk}"


class ObjectionLedgerQuerySet(AppendOnlyQuerySet["Objection"]):
    """Objections behind the gate (crm.permissions): rows about customers the user may see. Append-only, as
    the consent ledger."""

    gate_customer = "customer"
    ledger_name = "異議の記録"


class Objection(models.Model):
    """An objection (GDPR Art. 21) and the answers to it: an append-only ledger beside the consent ledger.

    `kind=objection`: the person objects to one purpose (`scope=purpose`, legitimate interest, Art. 21(1)) or
    to direct marketing as a whole (`scope=direct_marketing`, Art. 21(2)–(3): every marketing purpose at
    once, and absolute). `kind=compelling_grounds`: the privacy officer's recorded decision that compelling
    legitimate grounds override one purpose objection (`answers`, Art. 21(1) second sentence); a direct
    marketing objection can never be answered so (services refuse). An objection stands while no decision
    answers it; a later objection to the same purpose stands again. Nothing is ever updated: the selector
    consent.selectors.usable_for reads the standing ones.
    """

    class Kind(models.TextChoices):
        OBJECTION = "objection", _("異議（GDPR第21条）")
        COMPELLING_GROUNDS = "compelling_grounds", _("やむを得ない正当な根拠の判断（GDPR第21条1項）")

    class Scope(models.TextChoices):
        PURPOSE = "purpose", _("利用目的ごと（GDPR第21条1項）")
        DIRECT_MARKETING = "direct_marketing", _("ダイレクトマーケティング全体（GDPR第21条2項・3項）")

    class Source(models.TextChoices):
        ADMIN = "admin", _("管理画面")
        API = "api", _("API連携")
        REQUEST_DESK = "request_desk", _("開示等請求窓口")

    # As the consent ledger: the record outlives the customer (proof that the objection was honoured).
    customer = outliving_customer_reference(
        _("顧客"),
        db_index=False,  # covered by consent_objection_customer_idx
    )
    kind = models.CharField(_("種別"), max_length=20, choices=Kind.choices, default=Kind.OBJECTION)
    scope = models.CharField(_("対象"), max_length=20, choices=Scope.choices)
    purpose = models.ForeignKey(
        Purpose,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("利用目的"),
        db_index=False,
    )
    answers = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("判断の対象となる異議"),
        db_index=False,  # covered by consent_objection_answers_idx
    )
    source = models.CharField(_("受付経路"), max_length=20, choices=Source.choices)
    reason = EncryptedTextField(_("判断の理由"), blank=True, validators=[validate_no_my_number])
    operator = staff_reference(_("記録した従業者"), db_index=False)
    api_client_id = models.BigIntegerField(_("APIクライアントID"), null=True, blank=True)
    occurred_at = models.DateTimeField(_("申出・判断の日時"))
    recorded_at = models.DateTimeField(_("記録日時"), db_default=Now())

    objects = ObjectionLedgerQuerySet.as_manager()

    class Meta:
        verbose_name = _("異議（GDPR第21条）")
        verbose_name_plural = _("異議（GDPR第21条）")
        ordering = ["-id"]
        permissions = [
            ("decide_objection", _("異議に対し、やむを得ない正当な根拠を判断できる（個人情報保護管理者）")),
        ]
        indexes = [
            models.Index(fields=["customer", "purpose"], name="consent_objection_customer_idx"),
            models.Index(
                fields=["answers"],
                name="consent_objection_answers_idx",
                condition=models.Q(answers__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(scope="purpose", purpose__isnull=False))
                | models.Q(scope="direct_marketing", purpose__isnull=True),
                name="consent_objection_scope_purpose",
            ),
            models.CheckConstraint(
                condition=models.Q(kind="objection", answers__isnull=True)
                | models.Q(kind="compelling_grounds", answers__isnull=False, scope="purpose"),
                name="consent_objection_decision_answers",
            ),
        ]

    def __str__(self) -> str:
        return f"異議 #{self.pk}" if self.pk else "異議（未保存）"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise LedgerImmutableError("異議の記録は追記のみです。記録済みの行は変更できません。")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise LedgerImmutableError("異議の記録は追記のみです。記録済みの行は削除できません。")


# Third-party provision, processors and the data map (issue #16) live in consent.provision; imported here so
# that they are consent's models with its one migration history.
# The request desk's models live in their sub-package; imported here so consent keeps one migration history.
from consent.disclosure.models import DisclosurePackage  # noqa: E402
from consent.provision.models import (  # noqa: E402
    CrossBorderBasis,
    DataFlow,
    DataSystem,
    ProcessorAudit,
    ProcessorContract,
    ProvisionRecord,
    ProvisionSubject,
    ReceiptRecord,
    ReceiptSubject,
    Recipient,
)
from consent.requests.models import (  # noqa: E402
    DataSubjectRequest,
    IdentityVerification,
    RequestCompletion,
    RequestMessage,
)

__all__ = [
    "AppendOnlyQuerySet",
    "ConsentEvent",
    "ConsentState",
    "CrossBorderBasis",
    "DataFlow",
    "DataSubjectRequest",
    "DataSystem",
    "DisclosurePackage",
    "IdentityVerification",
    "LedgerImmutableError",
    "LegalBasis",
    "Objection",
    "ProcessorAudit",
    "ProcessorContract",
    "ProvisionRecord",
    "ProvisionSubject",
    "Purpose",
    "PurposeCategory",
    "PurposeVersion",
    "ReceiptRecord",
    "ReceiptSubject",
    "Recipient",
    "RequestCompletion",
    "RequestMessage",
    "SpecialCareRecord",
    "VisitorLink",
]
