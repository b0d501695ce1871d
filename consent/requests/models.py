"""The request desk (開示等請求): data-subject requests, identity checks, messages and completion records.

A `DataSubjectRequest` moves through received → identity verification → in progress → awaiting approval →
completed / rejected, with django-fsm-2 refusing any other move in the model layer (the state field is
protected: it cannot be assigned, only transitioned, and only consent.requests.services calls the
transitions). Requests from the public form start as "unconfirmed" and enter the queue only when the
requester clicks the confirmation link sent to the address given.

Who sees a request is the gate's business (`DataSubjectRequest.objects.restrict(user, action)`): the
assigned handler, support leads and the privacy officer (consent.requests.models.RequestQuerySet).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Self

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _
from django_fsm import FSMField, FSMModelMixin, transition

from consent import rules
from crm.fields import EncryptedCharField, EncryptedTextField, outliving_customer_reference, staff_reference
from crm.permissions import RestrictedQuerySet
from crm.validators import validate_no_my_number

if TYPE_CHECKING:
    from crm.permissions import User

# The permission that makes a support lead (開示等請求責任者, crm.permissions.ROLE_SUPPORT_LEAD) and the
# privacy officer: every request, and the second pair of eyes on an erasure.
OVERSEE_PERMISSION = "consent.oversee_datasubjectrequest"


class RequestQuerySet(RestrictedQuerySet["DataSubjectRequest"]):
    """The request desk's rule of the gate: the model permission of the action first, then every request for
    those who oversee the desk (support leads, the privacy officer: OVERSEE_PERMISSION), else only the
    requests assigned to the user. A customer's team plays no part: a request is about a person who may be
    nobody's customer yet."""

    def restrict_rows(self, user: User, action: str) -> Self:
        if user.has_perm(OVERSEE_PERMISSION):
            return self.all()
        return self.filter(handler_id=user.pk)

    def open(self) -> Self:
        return self.filter(state__in=OPEN_STATES)


class RequestPartQuerySet(RestrictedQuerySet[Any]):
    """Rows of a request (verifications, messages, completion records): their own model permission, and
    their request visible to the user."""

    def restrict_rows(self, user: User, action: str) -> Self:
        visible = DataSubjectRequest.objects.restrict(user, "view").values("pk")
        return self.filter(request__in=visible)


class RequestKind(models.TextChoices):
    PURPOSE_NOTICE = "purpose_notice", _("利用目的の通知（法第32条第2項）")
    DISCLOSURE = "disclosure", _("開示（法第33条・第三者提供記録を含む／GDPR第15条）")
    CORRECTION = "correction", _("訂正・追加・削除（法第34条／GDPR第16条）")
    STOP_USE_ERASURE = "stop_use_erasure", _("利用停止・消去（法第35条第1項／GDPR第17条）")
    STOP_THIRD_PARTY = "stop_third_party", _("第三者提供の停止（法第35条第3項）")
    PORTABILITY = "portability", _("データポータビリティ（GDPR第20条）")
    RESTRICTION = "restriction", _("処理の制限（GDPR第18条）")
    OBJECTION = "objection", _("異議（GDPR第21条）")


# APPI Art. 38: a fee only for a notice of purposes and for disclosure.
FEE_KINDS = (RequestKind.PURPOSE_NOTICE, RequestKind.DISCLOSURE)


class RequestState(models.TextChoices):
    UNCONFIRMED = "unconfirmed", _("メール確認待ち")
    RECEIVED = "received", _("受付")
    IDENTITY = "identity", _("本人確認中")
    IN_PROGRESS = "in_progress", _("対応中")
    AWAITING_APPROVAL = "awaiting_approval", _("承認待ち")
    COMPLETED = "completed", _("完了")
    REJECTED = "rejected", _("不対応（理由通知済み）")


OPEN_STATES = (
    RequestState.RECEIVED,
    RequestState.IDENTITY,
    RequestState.IN_PROGRESS,
    RequestState.AWAITING_APPROVAL,
)


class Jurisdiction(models.TextChoices):
    APPI = "appi", _("個人情報保護法")
    GDPR = "gdpr", _("EU一般データ保護規則（GDPR）")
    BOTH = "both", _("個人情報保護法・GDPRの両方")


class RequestChannel(models.TextChoices):
    PHONE = "phone", _("電話")
    LETTER = "letter", _("書面（郵送）")
    COUNTER = "counter", _("窓口")
    EMAIL = "email", _("電子メール")
    API = "api", _("API連携")
    WEB_FORM = "web_form", _("公開フォーム")


class DisclosureMethod(models.TextChoices):
    ELECTRONIC = "electronic", _("電磁的記録の提供")
    PAPER = "paper", _("書面の交付")
    OTHER = "other", _("その他（本人が指定する方法）")


class RejectionGround(models.TextChoices):
    APPI_33_2_1 = (
        "appi_33_2_1",
        _("本人又は第三者の生命、身体、財産その他の権利利益を害するおそれ（法第33条第2項第1号）"),
    )
    APPI_33_2_2 = "appi_33_2_2", _("業務の適正な実施に著しい支障を及ぼすおそれ（法第33条第2項第2号）")
    APPI_33_2_3 = "appi_33_2_3", _("他の法令に違反することとなる場合（法第33条第2項第3号）")
    GDPR_12_5 = "gdpr_12_5", _("明らかに根拠がない又は過剰な請求（GDPR第12条5項）")
    GDPR_17_3_B = "gdpr_17_3_b", _("法的義務の遵守のための処理（GDPR第17条3項(b)）")
    GDPR_17_3_E = "gdpr_17_3_e", _("法的請求の立証・行使・防御（GDPR第17条3項(e)）")
    IDENTITY_NOT_CONFIRMED = "identity", _("本人確認ができない")


class ErasureAction(models.TextChoices):
    ERASE = "erase", _("消去")
    ANONYMISE = "anonymise", _("匿名化")


class Language(models.TextChoices):
    JA = "ja", _("日本語")
    EN = "en", _("英語")


def _identity_verified(request: models.Model) -> bool:
    """Condition of every transition that fulfils: the verification step has been recorded."""
    return getattr(request, "identity_verified_at", None) is not None


def _rejection_stated(request: models.Model) -> bool:
    """Condition of a rejection: a ground and the explanation the requester is sent (APPI Art. 36)."""
    return bool(
        getattr(request, "rejection_ground", "") and getattr(request, "rejection_explanation", "").strip()
    )


class DataSubjectRequest(FSMModelMixin, models.Model):
    """One request of a person about their data (開示等請求, APPI Arts. 32–35; GDPR Arts. 15–18, 20, 21).

    The requester's identifiers (name, e-mail, phone, member number) are what they gave: they are matched to
    customers through the blind indexes and the handler links the right one (`customer`). `received_at`
    starts the legal clocks (consent.rules.request_due_dates); `due_on` is the nearest binding date, kept by
    the services for the queue's order. The state changes only through the transitions below, called by the
    services; `identity_verified_at` is set only by the recorded verification step, and every fulfilment
    service refuses before it.
    """

    kind = models.CharField(_("請求の種類"), max_length=20, choices=RequestKind.choices)
    jurisdiction = models.CharField(
        _("適用法令"), max_length=4, choices=Jurisdiction.choices, default=Jurisdiction.APPI
    )
    channel = models.CharField(_("受付経路"), max_length=10, choices=RequestChannel.choices)
    received_at = models.DateTimeField(_("受付日時"))
    language = models.CharField(
        _("連絡に用いる言語"), max_length=2, choices=Language.choices, default=Language.JA
    )
    disclosure_method = models.CharField(
        _("開示の方法（本人の指定）"),
        max_length=10,
        choices=DisclosureMethod.choices,
        blank=True,
        default="",
        help_text=_("法第33条第1項: 本人が指定した方法で開示します。"),
    )
    fee_amount = models.PositiveIntegerField(
        _("手数料（円）"),
        null=True,
        blank=True,
        help_text=_("法第38条: 利用目的の通知と開示に限り、実費を勘案した合理的な額を徴収できます。"),
    )
    fee_charged_at = models.DateTimeField(_("手数料の徴収日時"), null=True, blank=True)

    # What the requester gave (encrypted; matched through blind indexes, never searched in clear).
    requester_name = EncryptedCharField(
        _("請求者の氏名"), max_length=200, blank=True, validators=[validate_no_my_number]
    )
    requester_email = EncryptedCharField(_("請求者のメールアドレス"), max_length=254, blank=True)
    requester_phone = EncryptedCharField(_("請求者の電話番号"), max_length=30, blank=True)
    requester_member_no = models.CharField(_("会員番号（申告）"), max_length=20, blank=True, default="")
    details = EncryptedTextField(_("請求の内容"), blank=True, validators=[validate_no_my_number])

    # The request outlives the customer: it is the proof that the person's request was answered. The request
    # desk's erasure participant (services.requests_erasure_step) decides what the request keeps: the
    # requester's identifiers go once the answer has been sent, not before.
    customer = outliving_customer_reference(_("対象の顧客"), null=True, blank=True)
    handler = staff_reference(_("担当者"))

    state = FSMField(
        _("状態"), max_length=20, choices=RequestState.choices, default=RequestState.RECEIVED, protected=True
    )

    # The public form's confirmation link (a SHA-256 of the token; the token itself is only in the e-mail).
    confirmation_token_hash = models.CharField(
        _("確認リンクのハッシュ"), max_length=64, blank=True, default=""
    )
    confirmation_expires_at = models.DateTimeField(_("確認リンクの有効期限"), null=True, blank=True)
    confirmed_at = models.DateTimeField(_("メールアドレスの確認日時"), null=True, blank=True)

    identity_verified_at = models.DateTimeField(_("本人確認の完了日時"), null=True, blank=True)

    # The clocks (consent.rules.request_due_dates), kept by the services.
    appi_due = models.DateField(_("期限（法第33条〜第35条・社内基準）"), null=True, blank=True)
    gdpr_due = models.DateField(_("期限（GDPR第12条3項）"), null=True, blank=True)
    gdpr_extended_due = models.DateField(_("延長後の期限（GDPR第12条3項）"), null=True, blank=True)
    due_on = models.DateField(_("直近の期限"), null=True, blank=True)
    extension_reason = models.TextField(_("延長の理由"), blank=True, default="")
    extension_notice_sent_at = models.DateTimeField(_("延長の通知日時"), null=True, blank=True)

    # Four-eyes on erasure: who asked for approval, and who (never the handler) approved.
    approval_requested_by = staff_reference(_("承認を依頼した者"))
    approved_by = staff_reference(_("承認者"))
    approved_at = models.DateTimeField(_("承認日時"), null=True, blank=True)

    erasure_action = models.CharField(
        _("消去の方法"), max_length=10, choices=ErasureAction.choices, blank=True, default=""
    )
    # What was done, for the completion record: actions, field names, counts, hold reasons and dates, never
    # values (services append to it; nothing else writes it).
    work_log = models.JSONField(_("対応の経過"), default=list, blank=True)

    rejection_ground = models.CharField(
        _("不対応の理由"), max_length=20, choices=RejectionGround.choices, blank=True, default=""
    )
    rejection_explanation = models.TextField(_("本人への説明（法第36条）"), blank=True, default="")
    closed_at = models.DateTimeField(_("完了・不対応の日時"), null=True, blank=True)
    created_at = models.DateTimeField(_("登録日時"), db_default=Now())
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    objects = RequestQuerySet.as_manager()

    class Meta:
        verbose_name = _("開示等請求")
        verbose_name_plural = _("開示等請求")
        ordering = ["due_on", "id"]
        permissions = [
            (
                "oversee_datasubjectrequest",
                _("すべての開示等請求を閲覧し、消去を承認できる（開示等請求責任者・個人情報保護管理者）"),
            ),
        ]
        indexes = [
            # The queue: open requests by nearest deadline (and id, the changelist's tie-breaker).
            models.Index(
                fields=["due_on", "id"],
                name="consent_dsr_queue_idx",
                condition=models.Q(state__in=list(OPEN_STATES)),
            ),
            models.Index(fields=["handler", "due_on", "id"], name="consent_dsr_handler_idx"),
            models.Index(fields=["state", "due_on", "id"], name="consent_dsr_state_idx"),
            models.Index(fields=["kind", "due_on", "id"], name="consent_dsr_kind_idx"),
            models.Index(
                fields=["confirmation_token_hash"],
                name="consent_dsr_token_idx",
                condition=~models.Q(confirmation_token_hash=""),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(fee_amount__isnull=True) | models.Q(kind__in=list(FEE_KINDS)),
                name="consent_dsr_fee_kinds",
            ),
        ]

    def __str__(self) -> str:
        return f"開示等請求 #{self.pk}" if self.pk else "開示等請求（未保存）"

    # --- clocks --------------------------------------------------------------------------------------

    def due_dates(self) -> rules.RequestDueDates:
        return rules.request_due_dates(
            self.received_at,
            appi_days=int(getattr(settings, "APPI_REQUEST_DAYS", rules.APPI_REQUEST_DAYS_DEFAULT)),
        )

    def refresh_due_dates(self) -> None:
        """Set the stored clocks from received_at and the extension (services call it before saving)."""
        dates = self.due_dates()
        self.appi_due, self.gdpr_due, self.gdpr_extended_due = (
            dates.appi_due,
            dates.gdpr_due,
            dates.gdpr_extended_due,
        )
        gdpr = rules.gdpr_effective_due(
            dates,
            extension_reason=self.extension_reason,
            extension_notice_sent_at=self.extension_notice_sent_at,
        )
        binding: list[dt.date] = []
        if self.jurisdiction in (Jurisdiction.APPI, Jurisdiction.BOTH):
            binding.append(dates.appi_due)
        if self.jurisdiction in (Jurisdiction.GDPR, Jurisdiction.BOTH):
            binding.append(gdpr)
        self.due_on = min(binding)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    # --- transitions (called only by consent.requests.services) -------------------------------------

    @transition(field=state, source=RequestState.UNCONFIRMED, target=RequestState.RECEIVED)
    def confirm(self) -> None:
        """The requester clicked the confirmation link: the request enters the queue."""

    @transition(field=state, source=RequestState.RECEIVED, target=RequestState.IDENTITY)
    def start_verification(self) -> None:
        """The handler takes the request up and checks who the requester is."""

    @transition(
        field=state,
        source=[RequestState.RECEIVED, RequestState.IDENTITY],
        target=RequestState.IN_PROGRESS,
        conditions=[_identity_verified],
    )
    def start_work(self) -> None:
        """Identity verified: the request may be fulfilled."""

    @transition(
        field=state,
        source=RequestState.IN_PROGRESS,
        target=RequestState.AWAITING_APPROVAL,
        conditions=[_identity_verified],
    )
    def ask_approval(self) -> None:
        """An erasure waits for a second person's approval (four-eyes)."""

    @transition(field=state, source=RequestState.AWAITING_APPROVAL, target=RequestState.IN_PROGRESS)
    def return_to_work(self) -> None:
        """The approval was given (or declined): back to the handler."""

    @transition(
        field=state,
        source=RequestState.IN_PROGRESS,
        target=RequestState.COMPLETED,
        conditions=[_identity_verified],
    )
    def complete(self) -> None:
        """Fulfilled; the completion record is written with it."""

    @transition(
        field=state,
        source=[
            RequestState.RECEIVED,
            RequestState.IDENTITY,
            RequestState.IN_PROGRESS,
            RequestState.AWAITING_APPROVAL,
        ],
        target=RequestState.REJECTED,
        conditions=[_rejection_stated],
    )
    def reject(self) -> None:
        """Not fulfilled, with a ground and the explanation sent to the requester (APPI Art. 36)."""


class IdentityVerification(models.Model):
    """One recorded step of verifying the requester's identity: how, on what evidence, by whom, when.

    The public form's confirmation link records control of the e-mail address as one step (`verified_by`
    empty); the handler's check (documents, member login, call-back) records the step that completes the
    verification (`completes`)."""

    class Method(models.TextChoices):
        EMAIL_CONTROL = "email_control", _("メールアドレスの管理の確認（確認リンク）")
        ID_DOCUMENT = "id_document", _("本人確認書類")
        MEMBER_LOGIN = "member_login", _("会員ログイン")
        CALL_BACK = "call_back", _("登録電話番号への折り返し")
        IN_PERSON = "in_person", _("窓口での対面確認")
        OTHER = "other", _("その他")

    request = models.ForeignKey(
        DataSubjectRequest,
        on_delete=models.CASCADE,
        related_name="verifications",
        verbose_name=_("開示等請求"),
    )
    method = models.CharField(_("確認方法"), max_length=20, choices=Method.choices)
    evidence_reference = models.CharField(
        _("証跡の参照"),
        max_length=200,
        blank=True,
        default="",
        help_text=_("書類の受付番号など。書類の番号そのものや個人情報は書かないでください。"),
        validators=[validate_no_my_number],
    )
    completes = models.BooleanField(_("本人確認を完了する"), default=False)
    verified_by = staff_reference(_("確認者"))
    verified_at = models.DateTimeField(_("確認日時"))

    objects = RequestPartQuerySet.as_manager()

    class Meta:
        verbose_name = _("本人確認の記録")
        verbose_name_plural = _("本人確認の記録")
        ordering = ["verified_at", "id"]

    def __str__(self) -> str:
        return f"本人確認 #{self.pk}"


class RequestMessage(models.Model):
    """One e-mail sent to the requester about the request: which, in which language, when. The address is
    kept only as a keyed hash (the request holds it while it exists)."""

    class Kind(models.TextChoices):
        CONFIRMATION = "confirmation", _("受付の確認（確認リンク）")
        EXTENSION = "extension", _("期限の延長の通知（GDPR第12条3項）")
        RESULT = "result", _("対応結果の通知")
        REJECTION = "rejection", _("不対応の通知と理由（法第36条）")

    request = models.ForeignKey(
        DataSubjectRequest, on_delete=models.CASCADE, related_name="messages", verbose_name=_("開示等請求")
    )
    kind = models.CharField(_("種類"), max_length=20, choices=Kind.choices)
    language = models.CharField(_("言語"), max_length=2, choices=Language.choices)
    subject = models.CharField(_("件名"), max_length=200)
    recipient_hash = models.CharField(_("宛先の鍵付きハッシュ"), max_length=64)
    sent_by = staff_reference(_("送信者"))
    sent_at = models.DateTimeField(_("送信日時"))

    objects = RequestPartQuerySet.as_manager()

    class Meta:
        verbose_name = _("請求者への連絡")
        verbose_name_plural = _("請求者への連絡")
        ordering = ["sent_at", "id"]

    def __str__(self) -> str:
        return f"連絡 #{self.pk}"


class RequestCompletion(models.Model):
    """The proof of what was done for a request: what was disclosed, changed, erased, kept and why, with
    dates. It names the person only by keyed hashes (`subject_hash`), so it stays readable, and true, after
    the person's data is erased; `summary` holds field names, counts and dates, never values."""

    request = models.OneToOneField(
        DataSubjectRequest, on_delete=models.PROTECT, related_name="completion", verbose_name=_("開示等請求")
    )
    subject_hash = models.CharField(_("本人の鍵付きハッシュ"), max_length=64)
    outcome = models.CharField(_("結果"), max_length=20, choices=RequestState.choices)
    summary = models.JSONField(_("対応の記録"), default=dict)
    recorded_by = staff_reference(_("記録者"))
    recorded_at = models.DateTimeField(_("記録日時"), db_default=Now())

    objects = RequestPartQuerySet.as_manager()

    class Meta:
        verbose_name = _("対応完了記録")
        verbose_name_plural = _("対応完了記録")

    def __str__(self) -> str:
        return f"対応完了記録 #{self.pk}"
