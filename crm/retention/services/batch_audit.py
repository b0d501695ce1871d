"""The summary audit entry of a batch of the erasure path: auditlog's signals do not see set-based SQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.contenttypes.models import ContentType

from crm.classification import REDACTED
from crm.models import AuditEntry, Customer
from crm.retention.models import RetentionPolicy, RetentionRun

if TYPE_CHECKING:
    from django.contrib.auth.models import User

Scope = RetentionPolicy.Scope
Action = RetentionPolicy.Action


def batch_audit_write(
    *,
    action: str,
    scope: str,
    ids: list[int],
    reason: str,
    actor: User | None,
    policy: RetentionPolicy | None,
    run: RetentionRun | None,
    cleared: list[str],
) -> None:
    """One summary audit entry per batch: auditlog's signals do not see set-based SQL.

    Signed on insert like every entry and chained by the seal after the batch commits (crm.audit): no chain
    lock is held by the batch transaction.
    Holds ids, field names and codes only; values of cleared fields are shown as [redacted].
    """
    single = len(ids) == 1
    AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(Customer),
        object_pk=str(ids[0]) if single else f"retention-batch:{ids[0]}-{ids[-1]}",
        object_id=ids[0] if single else None,
        object_repr=f"顧客 #{ids[0]}" if single else f"顧客 {len(ids)}件（#{ids[0]}〜#{ids[-1]}）",
        action=AuditEntry.Action.DELETE
        if action == Action.ERASE and scope == Scope.CUSTOMERS
        else AuditEntry.Action.UPDATE,
        changes={name: [REDACTED, ""] for name in cleared},
        actor=actor,
        additional_data={
            "retention": {
                "action": action,
                "scope": scope,
                "reason": reason,
                "policy": policy.pk if policy else None,
                "run": run.pk if run else None,
                "count": len(ids),
                "customer_ids": ids,
            }
        },
    )
