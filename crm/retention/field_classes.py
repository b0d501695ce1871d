"""Classification of the retention engine's models (crm.classification). None holds a customer's personal
data except a legal hold's free-text note, which the form asks to keep free of it."""

from crm.classification import REGISTRY, DataClass, FieldSpec, not_personal

REGISTRY.declare(
    "crm.RetentionPolicy",
    **{
        name: not_personal("保存期間ポリシーの設定")
        for name in (
            "id",
            "name",
            "scope",
            "trigger",
            "days",
            "consent_purpose",
            "action",
            "legal_basis",
            "enabled",
            "batch_size",
            "created_at",
            "updated_at",
        )
    },
)
REGISTRY.declare(
    "crm.LegalHold",
    id=not_personal(),
    customer=not_personal("顧客への参照（消去後はNULL）"),
    reason=not_personal("保存義務の理由"),
    reference=not_personal("事件・請求等の参照番号"),
    note=FieldSpec(
        DataClass.ATTRIBUTE, ("legal_compliance",), "", "full", "備考（自由記述）", free_text=True
    ),
    placed_by=not_personal("従業者"),
    placed_at=not_personal(),
    until=not_personal(),
    released_at=not_personal(),
    released_by=not_personal("従業者"),
)
REGISTRY.declare(
    "crm.RetentionRun",
    **{
        name: not_personal("実行の記録（件数のみ）")
        for name in (
            "id",
            "policy",
            "status",
            "as_of",
            "started_at",
            "finished_at",
            "started_by",
            "action",
            "scope",
            "trigger",
            "days",
            "consent_purpose",
            "batch_size",
            "examined",
            "erased",
            "anonymised",
            "pseudonymised",
            "skipped_hold",
            "failed",
            "failures",
            "note",
        )
    },
)
REGISTRY.declare(
    "crm.RetentionRunSlice",
    **{
        name: not_personal("実行の進捗（ID範囲と件数）")
        for name in (
            "id",
            "run",
            "lo",
            "hi",
            "cursor",
            "done",
            "batches",
            "heartbeat_at",
            "examined",
            "erased",
            "anonymised",
            "pseudonymised",
            "skipped_hold",
            "failed",
            "failures",
            "error",
        )
    },
)
REGISTRY.declare(
    "crm.Tombstone",
    id=not_personal(),
    subject_hash=FieldSpec(DataClass.DERIVED, (), "", "full", "顧客IDの鍵付きハッシュ（消去の証明）"),
    scope=not_personal(),
    action=not_personal(),
    policy=not_personal(),
    run=not_personal(),
    reason=not_personal("理由コード"),
    performed_at=not_personal(),
)
