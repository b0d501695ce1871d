"""What the incidents app holds about a customer, for the disclosure package (crm.disclosure.registry): the
notices sent to the person about a breach (APPI Art. 26(2), 規則10; GDPR Art. 34)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from crm.disclosure import ModelSection, disclosure_section_register


def register() -> None:
    """incidents' sections (incidents.apps.IncidentsConfig.ready)."""
    disclosure_section_register(
        ModelSection(
            "incidents.notices",
            _("漏えい等に関する本人への通知"),
            "incidents.IncidentNotice",
            context=("incident", "status", "sent_at"),
            order_by=("created_at", "pk"),
        )
    )
