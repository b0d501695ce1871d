"""The admin's modules by concern: crm.admin and the admins of crm's parts never import each other; the parts
are registered at app loading."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.contrib import admin

import crm

CRM = Path(crm.__file__).parent
PART_ADMINS = {"crm.beat_admin", "crm.integrations.admin", "crm.retention.admin", "crm.signin.admin"}


def _imports(path: Path) -> set[str]:
    """Every module a file imports (`from a import b` counts as both a and a.b)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_crm_admin_imports_none_of_the_part_admins():
    # given every module of crm's admin (a package by concern)
    modules = sorted((CRM / "admin").glob("*.py"))
    assert modules, "crm/admin/ is a package"
    # when their imports are read, then none of them loads a part's admin (those are found at app loading)
    for path in modules:
        assert not (_imports(path) & PART_ADMINS), path.name


def test_the_part_admins_use_only_the_shared_mixins_of_crm_admin():
    # given the admins of crm's parts, when their imports are read
    for name in PART_ADMINS:
        path = CRM.parent / (name.replace(".", "/") + ".py")
        used = {m for m in _imports(path) if m == "crm.admin" or m.startswith("crm.admin.")}
        # then what they take from crm.admin is its mixins module, never the package's registrations
        assert used <= {"crm.admin.mixins"} | {m for m in used if m.startswith("crm.admin.mixins.")}, name


@pytest.mark.parametrize(
    "label",
    ["crm.Customer", "crm.Team", "crm.AuditEntry", "crm.RetentionPolicy", "crm.LegalHold", "crm.ApiClient"],
)
def test_every_admin_is_registered_once_the_apps_are_loaded(label):
    # given the loaded apps, then the crm admin pages and those of its parts are on the admin site
    from django.apps import apps

    assert admin.site.is_registered(apps.get_model(label))
