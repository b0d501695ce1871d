"""What the apps above crm register with the retention engine (crm never imports them).

- Erasure participants: data about a customer that deleting or unlinking the customer's rows cannot reach,
  such as the consent ledger (append-only, no foreign key constraint to the customer, kept as proof). The
  app registers a step in its AppConfig.ready(); `customer_erase` / `customer_anonymise` call every step in
  their own transaction, with the ids they act on, before the customer's linked rows are deleted or
  unlinked (a step can still follow those links). A step that raises rolls the whole erasure back: a
  person is erased whole or not at all.
- The source of the "consent withdrawn" trigger: the consent app tells which customers withdrew consent for
  a purpose at least N days before an instant.
- Record scopes: records of an app above crm that a retention policy removes whole (not customers), such as
  the third-party provision records consent keeps for the period 規則21 sets. The app registers, for a
  policy scope, the querysets of rows due at an instant; a run of a policy of that scope deletes them in
  batches (crm.retention.services.runs), with the same runs, dry run and audit as every policy.
- Retention scopes of records that are not walked customer by customer (a policy's `scope`, e.g. the
  disclosure packages of the request desk): the app that keeps the records registers how many are past a
  cutoff and how to remove a batch of them; a policy run of that scope asks them
  (crm.retention.services.runs).
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


@dataclasses.dataclass(frozen=True)
class RecordScope:
    """A policy scope whose rows are records of an app above crm: `due(trigger, days, as_of)` gives, per
    model, the rows a policy of that trigger and number of days removes at `as_of` (an unknown trigger
    raises ValueError, and the run fails naming it)."""

    scope: str
    due: RecordsDue


_record_scopes: dict[str, RecordScope] = {}


def record_scope_register(scope: str, due: RecordsDue) -> None:
    """Register the records of `scope` (called from an AppConfig.ready(); idempotent)."""
    _record_scopes[scope] = RecordScope(scope=scope, due=due)


def record_scope(scope: str) -> RecordScope | None:
    return _record_scopes.get(scope)
class ScopeDue(Protocol):
    def __call__(self, *, cutoff: dt.datetime) -> int:
        """How many records of the scope are past `cutoff` (the policy's N days before its run's instant)."""
        ...


class ScopeRemove(Protocol):
    def __call__(self, *, cutoff: dt.datetime, limit: int, actor: User | None) -> int:
        """Remove at most `limit` records past `cutoff`, inside the caller's transaction (rows locked with
        SKIP LOCKED; anything outside the database only after commit); return how many."""
        ...


@dataclasses.dataclass(frozen=True)
class RetentionScope:
    """A registered scope: `due` counts for the dry run, `remove` acts for the run."""

    scope: str
    due: ScopeDue
    remove: ScopeRemove


_scopes: dict[str, RetentionScope] = {}


def retention_scope_register(scope: str, *, due: ScopeDue, remove: ScopeRemove) -> None:
    """Register the records of a policy scope (called from an AppConfig.ready(); idempotent)."""
    _scopes[scope] = RetentionScope(scope=scope, due=due, remove=remove)


def retention_scope(scope: str) -> RetentionScope | None:
    return _scopes.get(scope)
