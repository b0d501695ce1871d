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

Import from the module (`from crm.audit.sealing import audit_seal_pending`): this package imports none of
them, so crm.models can use signing and identity (which do not read the models) without a cycle through the
modules that do.
"""
