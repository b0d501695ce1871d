"""crm.django_adapter leans on Django's internals: each one it relies on is pinned here, so an upgrade that
changes one fails loudly, naming what to re-check, instead of silently storing audit entries whose signature
does not match what they hold."""

from __future__ import annotations

import importlib.metadata
import inspect

import pytest
from auditlog.context import set_actor
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Model
from django.db.models.signals import pre_save
from django.test.utils import CaptureQueriesContext

from crm import django_adapter
from crm.models import AuditEntry, Team


def test_the_installed_django_is_the_release_the_adapter_was_reviewed_against():
    # given the release crm/django_adapter.py was read against
    installed = importlib.metadata.version("Django")
    # then the installed one is that release: after an upgrade, re-read the adapter, run this module, and
    # only then move REVIEWED_VERSION
    assert installed == django_adapter.REVIEWED_VERSION, (
        f"Django {installed} is installed; crm/django_adapter.py was reviewed against "
        f"{django_adapter.REVIEWED_VERSION}: re-check Model._save_table (AfterPreSave)"
    )


def test_model_save_table_still_has_the_signature_after_pre_save_overrides():
    # given the private method AfterPreSave overrides and calls with positional arguments
    assert hasattr(Model, "_save_table"), "Model._save_table is gone: AfterPreSave's hook never runs"
    # then its parameters are still these, in this order
    params = list(inspect.signature(Model._save_table).parameters)
    assert params == ["self", "raw", "cls", "force_insert", "force_update", "using", "update_fields"], (
        f"Model._save_table{inspect.signature(Model._save_table)} changed: re-read AfterPreSave"
    )
    # and save_base still sends pre_save before it calls it (the hook's whole point)
    source = inspect.getsource(Model.save_base)
    assert 0 <= source.index("pre_save.send") < source.index("self._save_table("), (
        "Model.save_base no longer sends pre_save before _save_table: re-read AfterPreSave"
    )


def _entry(team: Team, **extra: object) -> AuditEntry:
    ct = ContentType.objects.get_for_model(Team)
    return AuditEntry(content_type=ct, object_pk=str(team.pk), object_repr="team", action=1, **extra)


@pytest.mark.django_db
def test_an_entry_is_signed_after_the_pre_save_receivers_connected_after_the_model(team):
    # given a pre_save receiver connected at run time (as auditlog's set_actor connects its own), which
    # changes the entry being saved
    def rename(sender: type, instance: AuditEntry, **kwargs: object) -> None:
        instance.object_repr = "set by a late receiver"

    pre_save.connect(rename, sender=AuditEntry, dispatch_uid="test_django_adapter.rename", weak=False)
    try:
        # when an entry is saved
        entry = _entry(team)
        entry.save()
    finally:
        pre_save.disconnect(sender=AuditEntry, dispatch_uid="test_django_adapter.rename")

    # then the stored row holds the receiver's value and its signature covers it
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert stored.object_repr == "set by a late receiver"
    assert stored.entry_mac_valid(), "the entry was signed before the pre_save receivers ran"


@pytest.mark.django_db
def test_an_entry_saved_inside_set_actor_is_signed_with_its_actor_and_canonical_address(team, owner):
    # when an entry is saved inside auditlog's set_actor (which fills actor and address in pre_save)
    with set_actor(owner, remote_addr="2001:DB8:0:0::7"):
        entry = _entry(team)
        entry.save()

    # then the stored entry carries them, in PostgreSQL's spelling, and verifies
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert (stored.actor, stored.remote_addr) == (owner, "2001:db8::7")
    assert stored.entry_mac_valid()


@pytest.mark.django_db
def test_the_hook_runs_once_per_save_and_the_entry_is_inserted_without_an_update_first(team, monkeypatch):
    # given a counter on the hook
    calls: list[str] = []
    original = AuditEntry.after_pre_save

    def counted(self: AuditEntry, using: str) -> None:
        calls.append(using)
        original(self, using)

    monkeypatch.setattr(AuditEntry, "after_pre_save", counted)

    # when an entry is saved (its id is reserved before the INSERT, by the hook)
    with CaptureQueriesContext(connection) as queries:
        entry = _entry(team)
        entry.save()

    # then the hook ran once, on the default database, and Django inserted without trying an UPDATE
    assert calls == ["default"]
    statements = [q["sql"].lstrip().split(None, 1)[0].upper() for q in queries.captured_queries]
    assert "INSERT" in statements and "UPDATE" not in statements, statements
    assert AuditEntry.objects.get(pk=entry.pk).entry_mac_valid()


@pytest.mark.django_db
def test_a_primed_user_answers_has_perm_without_a_query_and_as_modelbackend_would(owner):
    # given what ModelBackend loads for a user, handed to a fresh copy of that user
    from django.contrib.auth import get_user_model
    from django.contrib.auth.backends import ModelBackend
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from crm.django_adapter import prime_permission_caches

    backend = ModelBackend()
    loaded = get_user_model().objects.get(pk=owner.pk)
    user_perms, group_perms = backend.get_user_permissions(loaded), backend.get_group_permissions(loaded)
    assert group_perms  # the staff role's permissions come through its group
    fresh = get_user_model().objects.get(pk=owner.pk)
    prime_permission_caches(fresh, user_perms=set(user_perms), group_perms=set(group_perms))
    # when it is asked for permissions
    with CaptureQueriesContext(connection) as ctx:
        answers = {p: fresh.has_perm(p) for p in sorted(group_perms)[:3]}
        refused = fresh.has_perm("crm.erase_all_customers")
    # then no query runs (ModelBackend read the primed caches), and the answers are ModelBackend's
    assert ctx.captured_queries == []
    assert all(answers.values())
    assert refused is owner.has_perm("crm.erase_all_customers") is False
