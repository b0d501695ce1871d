"""The one place where crm relies on django-auditlog's internals (reviewed against django-auditlog 3.4.1).

Everything here uses a name or a behaviour auditlog does not document: its context variables, the pre_save
receiver that `set_actor` connects, `_set_extra_data`, and `LogEntryManager.log_create` building the entry
through `self.create`. tests/crm/test_auditlog_adapter.py pins each of them (and
tests/consent/test_ledger_write.py compares an entry built here with the one auditlog saves, field by field)
and fails when an upgrade changes one; re-read this module against the new release before changing
REVIEWED_VERSION.

Two problems of auditlog 3.4 are worked around here:
- its context variable is set by `set_actor` and never reset, so after a request (or an earlier `set_actor`
  block) it still names that actor while nothing fills it in any more: `live_context()` tells a live
  context from a stale one by asking whether its pre_save receiver is still connected;
- nesting `set_actor` inside a live context leaks one pre_save receiver per call (the outer block's exit
  disconnects the inner one's id, not its own): `actor_swapped()` changes the actor of the live context
  instead of nesting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from auditlog.context import _set_extra_data, auditlog_disabled, auditlog_value, set_actor
from auditlog.models import LogEntryManager
from django.db.models import Model
from django.db.models.signals import pre_save

REVIEWED_VERSION = "3.4.1"


def logging_disabled() -> bool:
    """Whether the caller is inside auditlog's `disable_auditlog()` (its receivers then write nothing)."""
    return bool(auditlog_disabled.get())


def live_context() -> dict[str, Any] | None:
    """The auditlog context that is filling in entries now (the request's, or a set_actor block's), if any."""
    current = auditlog_value.get(None)
    if not current or "signal_duid" not in current:
        return None
    duid = current["signal_duid"]
    connected = any(key[0] == duid for key, *_rest in pre_save.receivers)
    return current if connected else None


@contextmanager
def actor_swapped(context: dict[str, Any], actor: Any) -> Iterator[None]:
    """Name `actor` in the live `context` for the block (its receiver fills in every entry written), then
    put the previous actor back."""
    saved = context.get("actor")
    context["actor"] = actor
    try:
        yield
    finally:
        context["actor"] = saved


@contextmanager
def actor_context(actor: Any, remote_addr: str | None) -> Iterator[None]:
    """auditlog's own set_actor for the block, outside any live context; the variable is restored after it
    (set_actor leaves its own, disconnected, context behind)."""
    previous = auditlog_value.get(None)
    try:
        with set_actor(actor, remote_addr=remote_addr):
            yield
    finally:
        if previous is not None:
            auditlog_value.set(previous)


def fill_from_live_context(entry: Model) -> None:
    """What the live context's pre_save receiver does to an entry being saved (actor, address, port), for an
    entry that is inserted by hand rather than saved (crm.audit.drafts)."""
    context = live_context()
    if context is not None:
        _set_extra_data(sender=type(entry), instance=entry, signal_duid=context["signal_duid"])


class _UnsavedEntries(LogEntryManager):
    """auditlog's log_create (content type, pk, repr, serialized data, correlation id), which ends in
    `self.create(**kwargs)`: here create returns the entry unsaved."""

    def create(self, **kwargs: Any) -> Any:
        return self.model(**kwargs)


def unsaved_entry(model: type[Model], instance: Model, *, action: int, changes: Any) -> Any:
    """The entry auditlog's log_create would save for `instance`, built but not saved."""
    manager = _UnsavedEntries()
    manager.model = model
    return manager.log_create(instance, action=action, changes=changes)
