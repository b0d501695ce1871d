"""Authentication backend: Django's ModelBackend, with its per-request reads as constant statements.

Every admin request loads the logged-in user and then the user's model permissions (ModelBackend: three
ORM queries, the user, user permissions and group permissions). Same rows, same caches on the user object
(`_user_perm_cache`, `_group_perm_cache`, as ModelBackend fills them), from one statement written once
(crm.rawsql) instead of compiled on every request (a superuser's "every permission" only when asked).
Nothing is cached beyond the request's user object: a role removed takes effect on the next request, as
with ModelBackend.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType

from crm import rawsql


@functools.cache
def _user_sql() -> str:
    """The user's row and, unless a superuser (every permission, loaded only when asked), the user's own and
    group permissions as 'user:app.codename' / 'group:app.codename': the admin checks a permission on every
    request, and this saves that second statement."""
    user = get_user_model()
    perms = _permissions_sql(False).replace("%(user)s", "u.id")
    return (
        f"SELECT {rawsql.columns(user, 'u')}, CASE WHEN u.is_superuser THEN NULL ELSE ARRAY("  # noqa: S608
        f"SELECT source || ':' || app || '.' || codename FROM ({perms}) AS perms(source, app, codename)"
        f') END FROM "{user._meta.db_table}" u WHERE u.id = %s'
    )


@functools.cache
def _permissions_sql(superuser: bool) -> str:
    user = get_user_model()
    perm, ctype = Permission._meta.db_table, ContentType._meta.db_table
    named = f"{perm} p JOIN {ctype} ct ON ct.id = p.content_type_id"
    if superuser:  # ModelBackend: every permission, from both sources
        return f"SELECT 'all', ct.app_label, p.codename FROM {named}"  # noqa: S608
    direct = user.user_permissions.through._meta.db_table
    groups = user.groups.through._meta.db_table
    group_perms = Permission.group_set.through._meta.db_table
    return (
        f"SELECT 'user', ct.app_label, p.codename FROM {direct} up JOIN {named} ON p.id = up.permission_id"  # noqa: S608
        " WHERE up.user_id = %(user)s"
        f" UNION ALL SELECT 'group', ct.app_label, p.codename FROM {groups} ug"
        f" JOIN {group_perms} gp ON gp.group_id = ug.group_id JOIN {named} ON p.id = gp.permission_id"
        " WHERE ug.user_id = %(user)s"
    )


class CrmModelBackend(ModelBackend):
    def get_user(self, user_id: Any) -> Any:
        try:
            row = rawsql.fetch_one(_user_sql(), [int(user_id)])
        except (TypeError, ValueError):
            return None
        if row is None:
            return None
        model = get_user_model()
        user = rawsql.load(model, row)
        perms = row[rawsql.width(model)]
        if perms is not None:  # ModelBackend's two caches, as _load_permissions fills them
            found: dict[str, set[str]] = {"user": set(), "group": set()}
            for entry in perms:
                source, _sep, name = entry.partition(":")
                found[source].add(name)
            user._user_perm_cache = found["user"]
            user._group_perm_cache = found["group"]
        return user if self.user_can_authenticate(user) else None

    def _get_permissions(self, user_obj: Any, obj: Any, from_name: str) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        cache_name = f"_{from_name}_perm_cache"
        if not hasattr(user_obj, cache_name):
            self._load_permissions(user_obj)
        return getattr(user_obj, cache_name)

    def _load_permissions(self, user_obj: Any) -> None:
        """Both of ModelBackend's caches from one statement (a cache already set is kept)."""
        found: dict[str, set[str]] = {"user": set(), "group": set()}
        with rawsql.prepared_cursor() as cur:
            cur.execute(_permissions_sql(bool(user_obj.is_superuser)), {"user": user_obj.pk})
            for source, app_label, codename in cur.fetchall():
                for name in ("user", "group") if source == "all" else (source,):
                    found[name].add(f"{app_label}.{codename}")
        for name, perms in found.items():
            if not hasattr(user_obj, f"_{name}_perm_cache"):
                setattr(user_obj, f"_{name}_perm_cache", perms)
