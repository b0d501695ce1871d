"""crm.auditlog_adapter leans on django-auditlog's internals: each one it relies on is pinned here, so an
upgrade that changes one fails loudly, naming what to re-check, instead of silently losing actors or
leaking receivers."""

from __future__ import annotations

import importlib.metadata

import pytest
from auditlog.context import disable_auditlog, set_actor
from django.db.models.signals import pre_save

from crm import auditlog_adapter
from crm.audit.actors import audit_actor
from crm.models import AuditEntry, Team


def test_the_installed_auditlog_is_the_release_the_adapter_was_reviewed_against():
    # given the release crm/auditlog_adapter.py was read against
    installed = importlib.metadata.version("django-auditlog")
    # then the installed one is that release: after an upgrade, re-read the adapter, run this module, and
    # only then move REVIEWED_VERSION
    assert installed == auditlog_adapter.REVIEWED_VERSION, (
        f"django-auditlog {installed} is installed; crm/auditlog_adapter.py was reviewed against "
        f"{auditlog_adapter.REVIEWED_VERSION}: re-check its private uses (_set_extra_data, the context "
        "variable, pre_save receivers, LogEntryManager.log_create)"
    )


@pytest.mark.django_db
def test_set_actor_context_is_live_inside_its_block_and_stale_after_it(owner):
    # given no context, then none is live
    assert auditlog_adapter.live_context() is None
    # when a set_actor block runs, then its context is live and names the actor
    with set_actor(owner, remote_addr="192.0.2.1"):
        live = auditlog_adapter.live_context()
        assert live is not None and live["actor"] == owner
    # then after the block auditlog leaves the variable set, but the adapter no longer calls it live
    assert auditlog_adapter.live_context() is None


@pytest.mark.django_db
def test_an_unsaved_entry_filled_from_the_live_context_carries_actor_and_address(team, owner):
    # when an entry is built the way auditlog's log_create builds it, inside a live context
    with set_actor(owner, remote_addr="192.0.2.7"):
        entry = auditlog_adapter.unsaved_entry(
            AuditEntry, team, action=AuditEntry.Action.CREATE, changes={"name": [None, "x"]}
        )
        auditlog_adapter.fill_from_live_context(entry)

    # then it is not saved, and carries what the receiver fills in on a save
    assert entry._state.adding and entry.pk is None
    assert not AuditEntry.objects.filter(object_pk=str(team.pk), actor=owner).exists()
    assert (entry.content_type.model_class(), str(entry.object_pk), entry.object_repr) == (
        Team,
        str(team.pk),
        str(team),
    )
    assert (entry.actor, entry.actor_email, entry.remote_addr) == (owner, owner.email, "192.0.2.7")


@pytest.mark.django_db
def test_nested_set_actor_still_leaks_a_receiver_which_the_swap_avoids(owner, teammate):
    # given auditlog's own nesting (why audit_actor swaps the actor instead): when it is fixed upstream this
    # fails, and audit_actor may nest set_actor again
    before = len(pre_save.receivers)
    with set_actor(owner):
        outer = auditlog_adapter.live_context()["signal_duid"]
        with set_actor(teammate):
            pass
    assert len(pre_save.receivers) == before + 1, "auditlog no longer leaks a receiver when nested"
    pre_save.disconnect(sender=AuditEntry, dispatch_uid=outer)  # the outer block's, left connected

    # when audit_actor replaces the actor inside a live context
    before = len(pre_save.receivers)
    with set_actor(owner):
        with audit_actor(teammate, replace=True):
            assert auditlog_adapter.live_context()["actor"] == teammate
        # then the outer actor is back, and no receiver is left behind
        assert auditlog_adapter.live_context()["actor"] == owner
    assert len(pre_save.receivers) == before


def test_disable_auditlog_is_seen_by_the_adapter():
    # given auditlog's documented switch, when it is on, then the adapter sees it (drafts then write nothing)
    assert not auditlog_adapter.logging_disabled()
    with disable_auditlog():
        assert auditlog_adapter.logging_disabled()
    assert not auditlog_adapter.logging_disabled()
