"""Role groups and their model permissions, kept in step with crm.permissions.ROLE_PERMISSIONS.

The groups are created by migration crm/0002; after every `migrate` the permissions of each role are set to
exactly what ROLE_PERMISSIONS says (other apps add theirs with `grant_role_permissions`), so a permission
never lingers on a role that no longer needs it.
"""

from __future__ import annotations

from typing import Any

from crm.permissions import ROLE_LABELS, ROLE_PERMISSIONS


def grant_role_permissions(role: str, perms: list[str]) -> None:
    """Called by other apps' AppConfig.ready() to give a role their model permissions."""
    ROLE_PERMISSIONS.setdefault(role, [])
    ROLE_PERMISSIONS[role] += [p for p in perms if p not in ROLE_PERMISSIONS[role]]


def roles_sync(apps: Any = None, **kwargs: Any) -> None:
    """Create the role groups and set their permissions (post_migrate receiver; idempotent)."""
    if apps is None:
        from django.apps import apps as global_apps

        apps = global_apps
    try:
        group_model = apps.get_model("auth", "Group")
        permission_model = apps.get_model("auth", "Permission")
    except LookupError:
        return
    for role in ROLE_LABELS:
        group, _created = group_model.objects.get_or_create(name=role)
        wanted = []
        for dotted in ROLE_PERMISSIONS.get(role, []):
            app_label, codename = dotted.split(".", 1)
            perm = permission_model.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if perm is not None:
                wanted.append(perm)
        group.permissions.set(wanted)
