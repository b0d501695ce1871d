"""Model permissions the consent app gives each role (crm.roles applies them after every migrate)."""

from __future__ import annotations

from crm.permissions import ROLE_PRIVACY, ROLE_STAFF, ROLE_SUPPORT, ROLE_SUPPORT_LEAD
from crm.roles import grant_role_permissions

PROVISION_PRIVACY_PERMISSIONS = [
    *(
        f"consent.{action}_{model}"
        for model in (
            "recipient",
            "processorcontract",
            "processoraudit",
            "crossborderbasis",
            "datasystem",
            "dataflow",
        )
        for action in ("view", "add", "change", "delete")
    ),
    "consent.view_provisionrecord",
    "consent.add_provisionrecord",
    "consent.view_provisionsubject",
    "consent.view_receiptrecord",
    "consent.add_receiptrecord",
    "consent.view_receiptsubject",
]
# The request desk (開示等請求): handlers take requests, record identity checks and fulfil them; which
# requests each one sees is the gate's business (consent.requests.models.RequestQuerySet: their own, or
# every request with consent.oversee_datasubjectrequest).
REQUEST_DESK_PERMISSIONS = [
    "consent.view_datasubjectrequest",
    "consent.add_datasubjectrequest",
    "consent.change_datasubjectrequest",
    "consent.view_identityverification",
    "consent.add_identityverification",
    "consent.view_requestmessage",
    "consent.view_requestcompletion",
    # The disclosure package of a request they see (consent.disclosure), ordered and downloaded by them.
    "consent.view_disclosurepackage",
]

CONSENT_ROLE_PERMISSIONS: dict[str, list[str]] = {
    # 個人情報保護管理者: keeps the purposes of use and their wording; reads every ledger row.
    ROLE_PRIVACY: [
        "consent.view_purpose",
        "consent.add_purpose",
        "consent.change_purpose",
        "consent.view_purposeversion",
        "consent.view_consentevent",
        "consent.add_consentevent",
        "consent.view_consentstate",
        "consent.view_visitorlink",
        "consent.view_specialcarerecord",
        "consent.add_specialcarerecord",
        # 異議（GDPR第21条）: records them, and alone decides compelling legitimate grounds (Art. 21(1)).
        "consent.view_objection",
        "consent.add_objection",
        "consent.decide_objection",
        # Recipients, processors' contracts and audits, cross-border bases and the data map: the privacy
        # officer alone edits them (consent.provision); provision records are written by the export service.
        *PROVISION_PRIVACY_PERMISSIONS,
        *REQUEST_DESK_PERMISSIONS,
        "consent.oversee_datasubjectrequest",
    ],
    # 営業・CS: records consents and withdrawals for their teams' customers (restrict() decides which).
    ROLE_STAFF: [
        "consent.view_purpose",
        "consent.view_purposeversion",
        "consent.view_consentevent",
        "consent.add_consentevent",
        "consent.view_consentstate",
        # 要配慮個人情報 of their teams' customers, only with the consent on record (法第20条第2項).
        "consent.view_specialcarerecord",
        "consent.add_specialcarerecord",
        # Objections of their teams' customers (GDPR Art. 21), as they record withdrawals.
        "consent.view_objection",
        "consent.add_objection",
    ],
    # 開示等請求対応: reads consents for disclosure requests (APPI Art. 33); works the requests assigned
    # to them.
    ROLE_SUPPORT: [
        "consent.view_purpose",
        "consent.view_purposeversion",
        "consent.view_consentevent",
        "consent.view_consentstate",
        "consent.view_visitorlink",
        "consent.view_specialcarerecord",
        "consent.view_objection",
        # Provision and receipt records go into the disclosure package (APPI 33(5)).
        "consent.view_provisionrecord",
        "consent.view_provisionsubject",
        "consent.view_receiptrecord",
        "consent.view_receiptsubject",
        *REQUEST_DESK_PERMISSIONS,
    ],
}
# 開示等請求責任者: the desk's rights, every request, and the second pair of eyes on an erasure.
CONSENT_ROLE_PERMISSIONS[ROLE_SUPPORT_LEAD] = [
    *CONSENT_ROLE_PERMISSIONS[ROLE_SUPPORT],
    "consent.oversee_datasubjectrequest",
]


def grant_consent_roles() -> None:
    for role, perms in CONSENT_ROLE_PERMISSIONS.items():
        grant_role_permissions(role, perms)
