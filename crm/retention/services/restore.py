"""After a backup is restored: the erasures recorded by tombstones since the backup are applied again.

Run by `manage.py retention_reapply_tombstones --import FILE`, after the legal holds of the same file came
back (crm.retention.services.holds.legal_holds_import): a restored hold still stops an erasure.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from crm.retention import rules
from crm.retention.models import RetentionPolicy, Tombstone
from crm.retention.services.erasure import (
    customer_anonymise,
    customer_category_erase,
    customer_erase,
    customer_pseudonymise,
)
from crm.retention.services.tombstones import customer_id_batches, tombstone_key

if TYPE_CHECKING:
    from django.contrib.auth.models import User

Scope = RetentionPolicy.Scope
Action = RetentionPolicy.Action

# Order matters when one subject has several tombstones: erasure supersedes the rest.
_REAPPLY_ORDER = [
    (Scope.MARKETING, Action.ERASE),
    (Scope.MARKETING, Action.ANONYMISE),
    (Scope.CUSTOMERS, Action.PSEUDONYMISE),
    (Scope.CUSTOMERS, Action.ANONYMISE),
    (Scope.CUSTOMERS, Action.ERASE),
]


def tombstones_reapply(*, actor: User | None = None, batch_size: int = 5000) -> Counter[str]:
    """After a backup is restored: find the customers a tombstone names and apply the same action again.

    Walks the restored customers by id, hashes each id with the tombstone key and looks the hashes up, so no
    list of erased ids is ever kept. Idempotent: what is already done is not done twice. A customer now under
    a legal hold is left untouched and counted as held.
    """
    key = tombstone_key()
    counts: Counter[str] = Counter()
    for ids in customer_id_batches(batch_size):
        by_hash = {rules.subject_hash(key, i): i for i in ids}
        found: dict[tuple[str, str], set[int]] = {}
        for h, scope, action in Tombstone.objects.filter(subject_hash__in=list(by_hash)).values_list(
            "subject_hash", "scope", "action"
        ):
            found.setdefault((scope, action), set()).add(by_hash[h])
        for scope, action in _REAPPLY_ORDER:
            targets = found.get((scope, action))
            if not targets:
                continue
            if scope == Scope.MARKETING:
                out = customer_category_erase(
                    customer_ids=targets, scope=scope, reason="tombstone_reapply", actor=actor
                )
            else:
                fn = {
                    Action.ERASE: customer_erase,
                    Action.ANONYMISE: customer_anonymise,
                    Action.PSEUDONYMISE: customer_pseudonymise,
                }[action]
                out = fn(customer_ids=targets, reason="tombstone_reapply", actor=actor)
            counts[f"{scope}:{action}"] += len(out.acted)
            counts["held"] += len(out.held)
    return counts
