"""The audit trail around django-auditlog's entries (crm.models.AuditEntry), one concern per module:

- actors:       who is recorded as acting (`audit_actor`), for services, tasks, commands and the API;
- drafts:       entries written beside their object in one statement (`audit_create_draft`);
- identity:     an entry's id, taken before it is written so that its MAC covers it;
- signing:      the keyed hashes (entry MAC, chain link, head signature);
- sealing:      chaining pending entries (`audit_seal_pending`), the sealer process's loop;
- anchor:       the chain's head recorded outside the database;
- verification: walking the chain and naming the first break (`audit_chain_verify`);
- maintenance:  lifting the database guard, for a role the application does not have.

auditlog's internals are reached only through crm.auditlog_adapter.
"""

from crm.audit.actors import audit_actor
from crm.audit.drafts import AuditDraft, audit_create_draft
from crm.audit.maintenance import MAINTENANCE_ROLE, audit_maintenance
from crm.audit.sealing import ChainBusy, audit_seal_after_commit, audit_seal_pending, audit_sealer_run
from crm.audit.verification import (
    ANCHOR,
    DEFAULT_BATCH_SIZE,
    EDITED,
    HEAD,
    KIND_LABELS,
    MISSING,
    UNCHAINED,
    ChainBreak,
    ChainReport,
    audit_chain_verify,
)

__all__ = [
    "ANCHOR",
    "DEFAULT_BATCH_SIZE",
    "EDITED",
    "HEAD",
    "KIND_LABELS",
    "MAINTENANCE_ROLE",
    "MISSING",
    "UNCHAINED",
    "AuditDraft",
    "ChainBreak",
    "ChainBusy",
    "ChainReport",
    "audit_actor",
    "audit_chain_verify",
    "audit_create_draft",
    "audit_maintenance",
    "audit_seal_after_commit",
    "audit_seal_pending",
    "audit_sealer_run",
]
