"""Classification of every field of the consent app's models (see crm.classification)."""

from crm.classification import REGISTRY, DataClass, FieldSpec, not_personal

Q, A, SC = DataClass.QUASI, DataClass.ATTRIBUTE, DataClass.SPECIAL_CARE
LEDGER = ("customer_management",)

_meta = {
    name: not_personal()
    for name in ("id", "code", "category", "legal_basis", "is_published", "display_order", "created_at")
}
REGISTRY.declare("consent.Purpose", **_meta, current_version=not_personal(), updated_at=not_personal())
REGISTRY.declare(
    "consent.PurposeVersion",
    id=not_personal(),
    purpose=not_personal(),
    version=not_personal(),
    title_ja=not_personal("公表する利用目的の文面"),
    title_en=not_personal("公表する利用目的の文面"),
    description_ja=not_personal("公表する利用目的の文面"),
    description_en=not_personal("公表する利用目的の文面"),
    legal_basis=not_personal(),
    text_hash=not_personal(),
    basis_change_reason=not_personal("法的根拠の変更についての社内の判断"),
    created_by=not_personal("従業者"),
    created_at=not_personal(),
)
REGISTRY.declare(
    "consent.ConsentEvent",
    id=not_personal(),
    customer=not_personal("顧客への参照"),
    visitor_id=FieldSpec(Q, LEDGER, "consent_evidence", "full", "Cookie等の訪問者ID（個人関連情報）"),
    purpose=not_personal(),
    purpose_version=not_personal(),
    action=FieldSpec(A, LEDGER, "consent_evidence", "full", "同意・撤回"),
    method=FieldSpec(A, LEDGER, "consent_evidence", "full", "同意の方式"),
    channel=FieldSpec(A, LEDGER, "consent_evidence", "full", "同意の経路"),
    form_id=not_personal("フォームの識別子"),
    text_hash=not_personal("提示した文面のハッシュ"),
    source_ip=FieldSpec(Q, LEDGER, "consent_evidence", "full", "送信元IPアドレス（同意の証跡）"),
    user_agent=FieldSpec(Q, LEDGER, "consent_evidence", "full", "ユーザーエージェント（同意の証跡）"),
    operator=not_personal("入力した従業者"),
    api_client_id=not_personal("連携システム"),
    source_event=not_personal(),
    occurred_at=FieldSpec(A, LEDGER, "consent_evidence", "full", "同意・撤回の日時"),
    recorded_at=not_personal("記録日時"),
    evidence_hash=FieldSpec(
        DataClass.DERIVED, LEDGER, "consent_evidence", "full", "証跡の鍵付きハッシュ（消去後の証明）"
    ),
    erased_at=not_personal("証跡の消去日時"),
)
REGISTRY.declare(
    "consent.ConsentState",
    id=not_personal(),
    customer=not_personal("顧客への参照"),
    purpose=not_personal(),
    granted=FieldSpec(A, LEDGER, "consent_evidence", "full", "現在の同意状態"),
    event=not_personal(),
    version=not_personal(),
    channel=FieldSpec(A, LEDGER, "consent_evidence", "full", "同意の経路"),
    occurred_at=FieldSpec(A, LEDGER, "consent_evidence", "full", "同意・撤回の日時"),
)
REGISTRY.declare(
    "consent.VisitorLink",
    id=not_personal(),
    visitor_id=FieldSpec(Q, LEDGER, "consent_evidence", "full", "Cookie等の訪問者ID（個人関連情報）"),
    customer=not_personal("顧客への参照"),
    linked_by=not_personal("従業者"),
    linked_at=not_personal(),
)
REGISTRY.declare(
    "consent.SpecialCareRecord",
    id=not_personal(),
    customer=not_personal("顧客への参照"),
    purpose=not_personal(),
    consent_event=not_personal("取得の根拠となる同意"),
    kind=FieldSpec(SC, ("special_care_health",), "special_care", "full", "要配慮個人情報の種類"),
    content=FieldSpec(SC, ("special_care_health",), "special_care", "full", "要配慮個人情報（暗号化）"),
    recorded_by=not_personal("従業者"),
    created_at=not_personal(),
)
REGISTRY.declare(
    "consent.Objection",
    id=not_personal(),
    customer=not_personal("顧客への参照"),
    kind=FieldSpec(A, LEDGER, "consent_evidence", "full", "異議・判断の別"),
    scope=FieldSpec(A, LEDGER, "consent_evidence", "full", "異議の対象"),
    purpose=not_personal(),
    answers=not_personal(),
    source=FieldSpec(A, LEDGER, "consent_evidence", "full", "異議の受付経路"),
    reason=FieldSpec(A, LEDGER, "consent_evidence", "full", "やむを得ない正当な根拠の判断理由（暗号化）"),
    operator=not_personal("記録した従業者"),
    api_client_id=not_personal("連携システム"),
    occurred_at=FieldSpec(A, LEDGER, "consent_evidence", "full", "異議・判断の日時"),
    recorded_at=not_personal("記録日時"),
)

# --- the request desk (開示等請求) ---------------------------------------------------------------------
D = DataClass.DIRECT
DESK = ("request_desk",)
REQUEST = "request_desk"
REGISTRY.declare(
    "consent.DataSubjectRequest",
    **{
        name: not_personal()
        for name in (
            "id",
            "kind",
            "jurisdiction",
            "channel",
            "language",
            "disclosure_method",
            "fee_amount",
            "fee_charged_at",
            "state",
            "confirmation_token_hash",
            "confirmation_expires_at",
            "confirmed_at",
            "identity_verified_at",
            "appi_due",
            "gdpr_due",
            "gdpr_extended_due",
            "due_on",
            "approved_at",
            "erasure_action",
            "rejection_ground",
            "closed_at",
            "created_at",
            "updated_at",
        )
    },
    received_at=not_personal("請求の受付日時"),
    requester_name=FieldSpec(D, DESK, REQUEST, "name", "請求者の氏名（暗号化）"),
    requester_email=FieldSpec(D, DESK, REQUEST, "email", "請求者のメールアドレス（暗号化）"),
    requester_phone=FieldSpec(D, DESK, REQUEST, "phone", "請求者の電話番号（暗号化）"),
    requester_member_no=FieldSpec(D, DESK, REQUEST, "full", "請求者が申告した会員番号"),
    details=FieldSpec(A, DESK, REQUEST, "full", "請求の内容（暗号化）", free_text=True),
    customer=not_personal("顧客への参照"),
    handler=not_personal("担当の従業者"),
    approval_requested_by=not_personal("従業者"),
    approved_by=not_personal("従業者"),
    extension_reason=not_personal("延長の理由（社内の判断）"),
    extension_notice_sent_at=not_personal(),
    rejection_explanation=not_personal("本人への説明（法第36条）"),
    work_log=not_personal("対応の経過（項目名・件数・日付のみ）"),
)
REGISTRY.declare(
    "consent.IdentityVerification",
    id=not_personal(),
    request=not_personal(),
    method=FieldSpec(A, DESK, REQUEST, "full", "本人確認の方法"),
    evidence_reference=FieldSpec(A, DESK, REQUEST, "full", "本人確認の証跡の参照", free_text=True),
    completes=not_personal(),
    verified_by=not_personal("従業者"),
    verified_at=not_personal(),
)
REGISTRY.declare(
    "consent.RequestMessage",
    id=not_personal(),
    request=not_personal(),
    kind=not_personal(),
    language=not_personal(),
    subject=not_personal("定型の件名"),
    recipient_hash=FieldSpec(DataClass.DERIVED, DESK, REQUEST, "full", "宛先の鍵付きハッシュ"),
    sent_by=not_personal("従業者"),
    sent_at=not_personal(),
)
REGISTRY.declare(
    "consent.RequestCompletion",
    id=not_personal(),
    request=not_personal(),
    subject_hash=FieldSpec(DataClass.DERIVED, DESK, REQUEST, "full", "本人の鍵付きハッシュ（消去後の証明）"),
    outcome=not_personal(),
    summary=not_personal("対応の記録（項目名・件数・日付のみ）"),
    recorded_by=not_personal("従業者"),
    recorded_at=not_personal(),
)

# --- disclosure packages (the ZIP itself is an encrypted file; the row holds counts and hashes only) ------
REGISTRY.declare(
    "consent.DisclosurePackage",
    **{
        name: not_personal("開示データの管理情報（件数・ハッシュのみ）")
        for name in (
            "id",
            "request",
            "state",
            "language",
            "progress",
            "attempts",
            "file_name",
            "size",
            "sha256",
            "contents",
            "error",
            "requested_by",
            "created_at",
            "ready_at",
            "expires_at",
            "removed_at",
        )
    },
)
