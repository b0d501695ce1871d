"""Classification of every field of the incidents app's models (see crm.classification).

An incident's own fields describe the event, never a person: its texts carry the instruction not to write
personal data, and the people affected are held as references to customers (not copies of their data).
"""

from crm.classification import REGISTRY, DataClass, FieldSpec, declare_object_permissions, not_personal
from incidents.models import EVENT_FIELDS, REPORT_ITEM_FIELDS

REGISTRY.declare(
    "incidents.Incident",
    **{
        name: not_personal()
        for name in (
            "id",
            "kind",
            "status",
            *EVENT_FIELDS,
            "special_care",
            "financial_damage",
            "unlawful_purpose",
            "affected_count",
            "is_drill",
            "notices_paused",
            "gdpr_high_risk",
            "gdpr_notice_exemption",
            "public_notice_at",
            "next_deadline_at",
            "created_at",
            "updated_at",
        )
    },
    title=not_personal("事案の件名（個人情報を書かない）"),
    description=not_personal("事案の説明（個人情報を書かない）"),
    created_by=not_personal("従業者"),
    **{
        name: not_personal("報告事項（規則8条1項、個人を特定しない記述）")
        for name in (
            *REPORT_ITEM_FIELDS,
            "gdpr_late_reason",
            "gdpr_notice_exemption_reason",
            "public_notice_where",
            "drill_findings",
        )
    },
)
REGISTRY.declare(
    "incidents.IncidentTimelineEntry",
    id=not_personal(),
    incident=not_personal(),
    at=not_personal(),
    actor=not_personal("従業者"),
    kind=not_personal(),
    from_status=not_personal(),
    to_status=not_personal(),
    note=not_personal("対応記録（個人情報を書かない）"),
)
REGISTRY.declare(
    "incidents.IncidentFiling",
    id=not_personal(),
    incident=not_personal(),
    kind=not_personal(),
    filed_at=not_personal(),
    filed_by=not_personal("従業者"),
    reference=not_personal("当局の受付番号"),
    recorded_at=not_personal(),
)
REGISTRY.declare(
    "incidents.IncidentScope",
    **{
        name: not_personal()
        for name in (
            "id",
            "incident",
            "method",
            "status",
            "cursor",
            "first_id",
            "last_id",
            "matched",
            "unmatched",
            "ambiguous",
            "invalid",
            "added",
            "created_at",
            "finished_at",
        )
    },
    criteria=not_personal("チーム・取得チャネル・登録期間の条件"),
    error=not_personal("エラーの種類（値を含めない）"),
    created_by=not_personal("従業者"),
)
REGISTRY.declare(
    "incidents.IncidentScopeKey",
    id=not_personal(),
    scope=not_personal(),
    kind=not_personal(),
    value=FieldSpec(
        DataClass.DIRECT,
        ("incident_response",),
        "incident_scope",
        "full",
        "照合キー（ブラインドインデックス・会員番号）",
    ),
)
REGISTRY.declare(
    "incidents.IncidentAffected",
    id=not_personal(),
    incident=not_personal(),
    customer=not_personal("顧客への参照"),
    scope=not_personal(),
    added_at=not_personal(),
)
REGISTRY.declare(
    "incidents.IncidentNotice",
    id=not_personal(),
    incident=not_personal(),
    customer=not_personal("顧客への参照"),
    status=not_personal(),
    claimed_at=not_personal(),
    sent_at=not_personal(),
    message_id=not_personal("通知ごとの識別子（事案と通知の番号のみ）"),
    error=not_personal("エラーの種類（値を含めない）"),
    created_at=not_personal(),
)
REGISTRY.declare(
    "incidents.IncidentCorrectiveAction",
    id=not_personal(),
    incident=not_personal(),
    description=not_personal("是正措置（個人情報を書かない）"),
    owner=not_personal("従業者"),
    due_on=not_personal(),
    completed_at=not_personal(),
    created_by=not_personal("従業者"),
    created_at=not_personal(),
)
declare_object_permissions(
    "incidents.IncidentUserObjectPermission", "incidents.IncidentGroupObjectPermission"
)
