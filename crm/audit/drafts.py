"""Audit entries written beside their object in one statement (crm.rawsql.insert_together)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from auditlog.diff import model_instance_diff
from auditlog.registry import auditlog as auditlog_registry
from auditlog.signals import post_log, pre_log
from django.conf import settings
from django.db.models import Model

from crm import auditlog_adapter
from crm.audit.sealing import audit_seal_after_commit
from crm.models import AuditEntry


@dataclass
class AuditDraft:
    """The signed, not yet inserted, audit entry of a create (audit_create_draft)."""

    entry: AuditEntry
    instance: Model
    changes: dict[str, Any]
    pre_log_results: list[tuple[Any, Any]]

    def written(self, using: str = "default") -> None:
        """Call once the entry's INSERT has run: what auditlog does after saving an entry."""
        self.entry._state.adding, self.entry._state.db = False, using
        audit_seal_after_commit(using=using)
        post_log.send(
            type(self.instance),
            instance=self.instance,
            instance_old=None,
            action=AuditEntry.Action.CREATE,
            error=None,
            pre_log_results=self.pre_log_results,
            changes=self.changes,
            log_entry=self.entry,
            log_created=True,
            use_json_for_changes=settings.AUDITLOG_STORE_JSON_CHANGES,
        )


def audit_create_draft(instance: Model) -> AuditDraft | None:
    """The entry auditlog's post_save receiver would write for creating `instance`, signed, not inserted.

    For a row written by hand in one statement with its audit entry (crm.rawsql.insert_together): the same
    steps as auditlog.receivers.log_create (disabled context, pre_log, the registry's masked diff, log_create)
    and as the pre_save receiver of the live auditlog context (actor, address), then AuditEntry.sign(), which
    also gives the entry its id. None when auditlog would write nothing. `instance` must carry its primary
    key already.
    """
    sender = type(instance)
    if auditlog_adapter.logging_disabled() or not auditlog_registry.contains(sender):
        return None
    pre_log_results = pre_log.send(sender, instance=instance, action=AuditEntry.Action.CREATE)
    if any(result is False for _receiver, result in pre_log_results):
        return None
    changes = model_instance_diff(None, instance, use_json_for_changes=settings.AUDITLOG_STORE_JSON_CHANGES)
    if not changes:
        return None
    entry = auditlog_adapter.unsaved_entry(
        AuditEntry, instance, action=AuditEntry.Action.CREATE, changes=changes
    )
    auditlog_adapter.fill_from_live_context(entry)
    entry.sign()
    return AuditDraft(entry, instance, changes, pre_log_results)
