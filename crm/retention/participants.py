"""What the apps above crm register with the retention engine (crm never imports them).

- Erasure participants: data about a customer that deleting or unlinking the customer's rows cannot reach,
  such as the consent ledger (append-only, no foreign key constraint to the customer, kept as proof). The
  app registers a step in its AppConfig.ready(); `customer_erase` / `customer_anonymise` call every step in
  their own transaction, with the ids they act on, before the customer's linked rows are deleted or
  unlinked (a step can still follow those links). A step that raises rolls the whole erasure back: a
  person is erased whole or not at all.
- The source of the "consent withdrawn" trigger: the consent app tells which customers withdrew consent for
  a purpose at least N days before an instant.
- Record scopes: records of an app above crm that a retention policy removes whole (not customers, not
  walked customer by customer), such as the third-party provision records consent keeps for the period
  規則21 sets, or the request desk's disclosure packages. The app registers, for a policy scope, the
  querysets of rows due at an instant (`due`) and, when removing a row is more than deleting it (marking a
  package expired and deleting its file after commit), how to remove a locked batch (`remove`). A run of a
  policy of that scope removes them batch by batch in a resumable slice (crm.retention.services.runs), with
  the same runs, dry run and audit as every policy. One registry, one run path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.db.models import QuerySet


class ErasureStep(Protocol):
    def __call__(self, *, customer_ids: list[int], action: str, reason: str, actor: User | None) -> int:
        """Make what the app holds about `customer_ids` unreadable for `action` ("erase"/"anonymise"),
        inside the caller's transaction; return the number of rows changed (for logs and tests)."""
        ...


@dataclasses.dataclass(frozen=True)
class ErasureParticipant:
    """One registered step: `name` identifies it (registering the same name again replaces it)."""

    name: str
    step: ErasureStep


_participants: dict[str, ErasureParticipant] = {}


def erasure_participant_register(name: str, step: ErasureStep) -> None:
    """Register `step` under `name` (called from an AppConfig.ready(); idempotent)."""
    _participants[name] = ErasureParticipant(name=name, step=step)


def erasure_participants() -> list[ErasureParticipant]:
    """The registered steps, in the order they were first registered (app order in INSTALLED_APPS)."""
    return list(_participants.values())


WithdrawnSource = Callable[[str, int, dt.datetime | None], "QuerySet[Any]"]
_withdrawn_source: list[WithdrawnSource] = []


def consent_withdrawn_source_register(source: WithdrawnSource) -> None:
    """Register the function answering `(purpose_code, days, as_of) -> QuerySet of customer ids` whose
    consent for the purpose was withdrawn at least `days` days before `as_of` (the consent app)."""
    _withdrawn_source[:] = [source]


def consent_withdrawn_source() -> WithdrawnSource | None:
    return _withdrawn_source[0] if _withdrawn_source else None


RecordsDue = Callable[[str, int, dt.datetime], "list[QuerySet[Any]]"]


class RecordsRemove(Protocol):
    def __call__(self, *, rows: QuerySet[Any], actor: User | None) -> int:
        """Remove `rows` (one batch, already locked by the caller's transaction; anything outside the
        database only after commit, with transaction.on_commit); return how many were removed."""
        ...


def records_delete(*, rows: QuerySet[Any], actor: User | None) -> int:
    """The default removal: delete the rows (the ORM audits each deletion, ids only; links cascade)."""
    _total, per_model = rows.delete()
    return per_model.get(rows.model._meta.label, 0)


@dataclasses.dataclass(frozen=True)
class RecordScope:
    """A policy scope whose rows are records of an app above crm: `due(trigger, days, as_of)` gives, per
    model, the rows a policy of that trigger and number of days removes at `as_of` (a trigger the scope
    does not know raises ValueError, and the run fails naming it); `remove` removes one locked batch."""

    scope: str
    due: RecordsDue
    remove: RecordsRemove = records_delete


_record_scopes: dict[str, RecordScope] = {}


def record_scope_register(scope: str, due: RecordsDue, *, remove: RecordsRemove = records_delete) -> None:
    """Register the records of `scope` (called from an AppConfig.ready(); idempotent)."""
    _record_scopes[scope] = RecordScope(scope=scope, due=due, remove=remove)


def record_scope(scope: str) -> RecordScope | None:
    return _record_scopes.get(scope)
