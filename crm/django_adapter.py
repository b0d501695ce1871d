"""The one place where the project relies on Django's private internals (reviewed against Django 5.2.19).

House rule: no private name (`_something`) of Django outside this module. What is here has no public
equivalent that keeps a need of the project; each entry says why, and what it costs to keep.
tests/crm/test_django_adapter.py pins every internal used here (its existence, its signature, and a
behavioural round trip through it) and fails loudly when an upgrade changes one; re-read this module against
the new release before changing REVIEWED_VERSION. tests/test_private_names.py fails when a private name of
Django, guardian or auditlog is used anywhere else in crm, consent, incidents or config.

Looked at and dropped (2026-12-06, bench/README.md "Private names of Django"): the API's constant statements
bound on the server through `DatabaseWrapper._prepare_cursor` (now Django's own `connection.cursor()`), and
`ConstantInsert` overriding `Model._do_insert` (now Django's insert compiler).
"""

from __future__ import annotations

from typing import Any

from django.db import models

REVIEWED_VERSION = "5.2.19"


class AfterPreSave(models.Model):
    """Model mixin: `after_pre_save(using)` runs on every save() once the pre_save signal's receivers have
    run, right before the row is written.

    Why: crm.AuditEntry signs the row it stores (entry_mac), and django-auditlog fills in the actor and the
    address in a pre_save receiver that `set_actor` (and its middleware) connects per request, i.e. after any
    receiver the project connects at start-up; receivers run in the order they were connected. Django has no
    public hook between the pre_save signal and the INSERT: an override of save() runs before the signal, a
    receiver of ours before auditlog's. Signed there, the entry would get its actor and address after the
    signature (the chain then reports it as forged: tried, bench/README.md), and an unparsable forwarded
    address, which AuditEntry.sign drops, would be put back and make the INSERT fail.

    Cost: `Model._save_table(raw, cls, force_insert, force_update, using, update_fields)` is private;
    save_base calls it after pre_save, for the model's own table (and once per concrete parent: the hook
    runs for the model's own table only). A change of its name, of its signature or of the moment save_base
    sends pre_save would break the audit trail's signatures silently: tests/crm/test_django_adapter.py
    checks all three.
    """

    class Meta:
        abstract = True

    def after_pre_save(self, using: str) -> None:
        """Override: the instance as the pre_save receivers left it, before its row is written."""

    def _save_table(
        self,
        raw: bool = False,
        cls: Any = None,
        force_insert: Any = False,
        force_update: bool = False,
        using: str | None = None,
        update_fields: Any = None,
    ) -> Any:
        if cls is None or cls._meta.concrete_model is self._meta.concrete_model:
            self.after_pre_save(using or "default")
        return super()._save_table(  # type: ignore[misc]  # stub gap: the private method is not in the stubs
            raw, cls, force_insert, force_update, using, update_fields
        )


def prime_permission_caches(user: Any, *, user_perms: set[str], group_perms: set[str]) -> None:
    """Give a freshly loaded user the model permissions ModelBackend would load, so that `has_perm` asks no
    query (the integration API's service users, whose permissions crm.integrations.auth keeps per process
    for PERMISSION_CACHE_SECONDS).

    Why: ModelBackend loads a user's permissions with two queries on the first `has_perm` of every request
    (the user object is new each time); on the API's busiest call that is two of five statements. Django
    has no public way to hand it permissions it already knows.

    Cost: ModelBackend's cache attributes `_user_perm_cache`, `_group_perm_cache` and `_perm_cache`
    (django.contrib.auth.backends, `_get_permissions` / `get_all_permissions`) are private; a rename would
    make the backend load them itself again (slower, still correct). tests/crm/test_django_adapter.py checks
    the names and that a primed user's `has_perm` runs no query.
    """
    user._user_perm_cache = set(user_perms)
    user._group_perm_cache = set(group_perms)
    user._perm_cache = set(user_perms) | set(group_perms)
