"""The disclosure package (開示, APPI Art. 33; GDPR Arts. 15 and 20): the registry of what each app holds
about a customer (registry), crm's own sections (sections) and the writer of the ZIP (package)."""

from crm.disclosure.registry import (
    Column,
    ModelSection,
    Section,
    SectionContext,
    disclosure_section_register,
    disclosure_sections,
    json_value,
)

__all__ = [
    "Column",
    "ModelSection",
    "Section",
    "SectionContext",
    "disclosure_section_register",
    "disclosure_sections",
    "json_value",
]
