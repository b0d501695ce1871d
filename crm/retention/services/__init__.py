"""Writes of the retention engine: the one erasure path, legal holds, runs and tombstones.

One module per concern; every name callers use is importable from here (`from crm.retention.services import
customer_erase`, `services.retention_run_start(...)`):

- erasure      the erasure engine: `customer_erase` / `customer_anonymise` / `customer_pseudonymise` /
               `customer_category_erase`, the only code that erases or anonymises a customer, and `act`, the
               set-based batch they and the runs share;
- clearing     what the classification registry says to clear, keep and generalise, as columns;
- cascade      following the foreign keys to an erased row (delete or unlink, set-based);
- tombstones   the proof of each erasure (keyed hash of the id), its export and import;
- batch_audit  the summary audit entry of a batch;
- holds        legal holds: place, release, carry across a restore;
- runs         policy runs: slices, batches, the heartbeat watchdog;
- restore      re-applying tombstones after a backup is restored.
"""

from crm.retention.services.batch_audit import batch_audit_write
from crm.retention.services.clearing import CLEARED_CLASSES, STATUTORY_CATEGORIES
from crm.retention.services.erasure import (
    Outcome,
    act,
    customer_anonymise,
    customer_category_erase,
    customer_erase,
    customer_pseudonymise,
    visitor_events_erase,
)
from crm.retention.services.errors import ErasePermissionDenied, RetentionError, RetentionRunActive
from crm.retention.services.holds import (
    HOLD_KIND,
    RESTORED_HOLD_NOTE,
    legal_hold_audit,
    legal_hold_place,
    legal_hold_release,
    legal_holds_export,
    legal_holds_import,
)
from crm.retention.services.restore import tombstones_reapply
from crm.retention.services.runs import (
    RETENTION_LOCK_NS,
    heartbeat_seconds,
    retention_resume_stalled,
    retention_run_due_policies,
    retention_run_start,
    retention_run_to_completion,
    retention_slice_advance,
    retention_slice_fail,
)
from crm.retention.services.tombstones import (
    customer_id_batches,
    tombstone_key,
    tombstones_export,
    tombstones_import,
    tombstones_write,
)

__all__ = [
    "CLEARED_CLASSES",
    "HOLD_KIND",
    "RESTORED_HOLD_NOTE",
    "RETENTION_LOCK_NS",
    "STATUTORY_CATEGORIES",
    "ErasePermissionDenied",
    "Outcome",
    "RetentionError",
    "RetentionRunActive",
    "act",
    "batch_audit_write",
    "customer_anonymise",
    "customer_category_erase",
    "customer_erase",
    "customer_id_batches",
    "customer_pseudonymise",
    "heartbeat_seconds",
    "legal_hold_audit",
    "legal_hold_place",
    "legal_hold_release",
    "legal_holds_export",
    "legal_holds_import",
    "retention_resume_stalled",
    "retention_run_due_policies",
    "retention_run_start",
    "retention_run_to_completion",
    "retention_slice_advance",
    "retention_slice_fail",
    "tombstone_key",
    "tombstones_export",
    "tombstones_import",
    "tombstones_reapply",
    "tombstones_write",
    "visitor_events_erase",
]
