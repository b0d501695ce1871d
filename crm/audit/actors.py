"""Who is recorded as acting: one rule for services, tasks, commands and the integration API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

from crm import auditlog_adapter

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.http import HttpRequest


def request_user(request: HttpRequest) -> User:
    """The signed-in user of a view only a signed-in user reaches: the admin's (its admin_view lets in
    active staff only) and those behind login_required. django-stubs types `request.user` as
    `User | AnonymousUser` because it cannot see those guards; this names the guarantee, checks nothing."""
    return cast("User", request.user)


@contextmanager
def audit_actor(
    actor: User | None, *, remote_addr: str | None = None, replace: bool = False
) -> Iterator[None]:
    """Attribute the audit entries written inside the block to `actor`.

    Inside a request the auditlog middleware's context is live: it already names the signed-in user and the
    address, and is kept unless `replace` (the integration API acts as the client's service user, whatever
    the middleware saw); a replaced actor is swapped into that context, never nested in a second one
    (auditlog_adapter explains the leak). Outside a request (tasks, commands, tests) `actor` and
    `remote_addr` are set for the block and the previous context is restored afterwards.
    """
    if actor is None:
        yield
        return
    context = auditlog_adapter.live_context()
    if context is not None:
        if context.get("actor") and not replace:
            yield
            return
        with auditlog_adapter.actor_swapped(context, actor):
            yield
        return
    with auditlog_adapter.actor_context(actor, remote_addr):
        yield
