"""Model permissions the incidents app gives each role (crm.roles applies them after every migrate)."""

from __future__ import annotations

from crm.permissions import ROLE_PRIVACY, ROLE_SECURITY, ROLE_STAFF
from crm.roles import grant_role_permissions

_RESPONDER = [
    "incidents.view_incident",
    "incidents.view_all_incidents",
    "incidents.add_incident",
    "incidents.change_incident",
    "incidents.change_all_incidents",
    "incidents.view_incidenttimelineentry",
    "incidents.view_incidentfiling",
    "incidents.add_incidentfiling",
    "incidents.view_incidentscope",
    "incidents.add_incidentscope",
    "incidents.view_incidentaffected",
    "incidents.view_incidentnotice",
    "incidents.add_incidentnotice",
    "incidents.view_incidentcorrectiveaction",
    "incidents.add_incidentcorrectiveaction",
]

INCIDENT_ROLE_PERMISSIONS: dict[str, list[str]] = {
    # セキュリティ and 個人情報保護管理者 run breach response: every incident, its clocks and filings.
    ROLE_SECURITY: list(_RESPONDER),
    ROLE_PRIVACY: list(_RESPONDER),
    # 営業・CS: only the incidents whose response team they are on (object permissions decide which);
    # without one they see no incident at all.
    ROLE_STAFF: [
        "incidents.view_incident",
        "incidents.change_incident",
        "incidents.view_incidenttimelineentry",
        "incidents.view_incidentfiling",
        "incidents.add_incidentfiling",
        "incidents.view_incidentcorrectiveaction",
    ],
}


def grant_incident_roles() -> None:
    for role, perms in INCIDENT_ROLE_PERMISSIONS.items():
        grant_role_permissions(role, perms)
