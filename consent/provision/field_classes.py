"""Classification of the provision package's models (crm.classification). Recipients, contracts, audits,
bases and the data map describe organisations and systems, not customers; provision and receipt records
name people only through their links (ProvisionSubject, ReceiptSubject) and hold the items provided as
field names, never values."""

from crm.classification import REGISTRY, DataClass, FieldSpec, not_personal

ORG = "提供先・委託先の情報（法人）"


def _all(label: str, names: list[str], description: str) -> None:
    REGISTRY.declare(label, **{n: not_personal(description) for n in names})


_all(
    "consent.Recipient",
    [
        "id", "name", "kind", "country", "contact", "data_categories", "purposes", "sub_processing_allowed",
        "sub_processors", "joint_items", "joint_scope", "joint_purpose", "joint_manager",
        "joint_published_on", "created_at", "updated_at",
    ],
    ORG,
)  # fmt: skip
_all(
    "consent.ProcessorContract",
    [
        "id", "recipient", "signed_on", "expires_on", "document_ref", "clause_instructions",
        "clause_confidentiality", "clause_security", "clause_sub_processors", "clause_assistance",
        "clause_deletion_return", "clause_audits", "appi_supervision", "created_at",
    ],
    "委託契約（GDPR第28条3項・法第25条）",
)  # fmt: skip
_all(
    "consent.ProcessorAudit",
    ["id", "recipient", "audited_on", "result", "findings", "next_due_on", "created_at"],
    "委託先の監査",
)
_all(
    "consent.CrossBorderBasis",
    [
        "id", "recipient", "kind", "purpose", "country_regime", "recipient_measures", "safeguards",
        "last_checked_on", "next_check_on", "effective_on", "withdrawn_on", "created_at",
    ],
    "外国にある第三者への提供の根拠（法第28条）",
)  # fmt: skip
_all(
    "consent.ProvisionRecord",
    [
        "id", "recipient", "basis", "purpose", "opt_out_notified_on", "contract", "data_items",
        "first_provided_on", "last_provided_on", "batch", "provisions", "created_on", "keep_until",
        "created_by", "created_at", "customers",
    ],
    "第三者提供記録（項目名のみ、値は持たない）",
)  # fmt: skip
_all(
    "consent.ReceiptRecord",
    [
        "id", "provider_name", "provider_address", "provider_representative", "data_items", "received_on",
        "basis", "created_on", "keep_until", "created_by", "created_at", "customers",
    ],
    "第三者からの受領記録（提供者は法人の情報）",
)  # fmt: skip
REGISTRY.declare(
    "consent.ReceiptRecord",
    # How the provider came by the data may describe the people (a campaign, an event they attended).
    acquisition=FieldSpec(
        DataClass.ATTRIBUTE, ("third_party_provision",), "provision_records", "full",
        "提供者による取得の経緯（自由記述）", free_text=True,
    ),
)  # fmt: skip
for label in ("consent.ProvisionSubject", "consent.ReceiptSubject"):
    REGISTRY.declare(
        label,
        id=not_personal(),
        record=not_personal(),
        customer=not_personal("顧客への参照（提供・受領の本人、法第33条5項で開示）"),
    )
_all(
    "consent.DataSystem",
    [
        "id", "name", "is_this_crm", "location", "country", "data_owner", "steward", "data_categories",
        "security_measures", "recipient",
    ],
    "データマップ（システム）",
)  # fmt: skip
_all(
    "consent.DataFlow",
    [
        "id",
        "source",
        "target_system",
        "target_recipient",
        "purpose",
        "frequency",
        "data_categories",
        "description",
    ],
    "データマップ（データの流れ）",
)
