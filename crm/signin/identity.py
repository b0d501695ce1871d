"""How a sign-in attempt names its account without keeping what was typed.

What is typed in the login form's name box is not always a login name: a customer's e-mail address, a
colleague's name or a password typed in the wrong box all land there. Only a login name that is an account's
is kept as such (the security role must see which account is locked); anything else is kept as a keyed hash,
which still groups repeated attempts with the same text.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.utils.crypto import salted_hmac

UNKNOWN_PREFIX = "?"  # an AccessAttempt.username of a name that is no account: "?" + keyed hash


def typed_username_hash(typed: str) -> str:
    """Keyed hash (HMAC-SHA256 under SECRET_KEY, its own salt) of a name as typed; 32 hex characters."""
    return salted_hmac("crm.signin.typed-username", typed, algorithm="sha256").hexdigest()[:32]


def account_for(typed: str | None) -> Any:
    """The active or inactive user whose login name is exactly `typed` (as ModelBackend matches), or None."""
    if not typed:
        return None
    user_model = get_user_model()
    return user_model.objects.filter(**{user_model.USERNAME_FIELD: typed}).first()


def typed_username(request: HttpRequest | None, credentials: dict[str, Any] | None) -> str | None:
    field = get_user_model().USERNAME_FIELD
    typed = (credentials or {}).get(field)
    if typed is None and request is not None and request.method == "POST":
        typed = request.POST.get(field)
    return None if typed is None else str(typed)


def axes_username(request: HttpRequest | None, credentials: dict[str, Any] | None) -> str | None:
    """AXES_USERNAME_CALLABLE: the login name when it is an account's, else "?" + its keyed hash.

    Lockout per username works the same either way (the same text gives the same value); the lockout table
    (shown to the security role) never holds text that is no login name."""
    typed = typed_username(request, credentials)
    if typed is None:
        return None
    if account_for(typed) is not None:
        return typed
    return UNKNOWN_PREFIX + typed_username_hash(typed)


def client_address(request: HttpRequest) -> str | None:
    """AXES_CLIENT_IP_CALLABLE: the address the lockout counts per.

    With TRUSTED_PROXY_HOPS = 0 (the default) it is the connection's (REMOTE_ADDR) and X-Forwarded-For is
    ignored: anyone can write that header. Behind N reverse proxies, each appending the address it received
    from, the client is the N-th address from the right of X-Forwarded-For; anything left of it was written by
    the client and is ignored, so a made-up address cannot dodge the lockout."""
    from django.conf import settings

    hops = int(getattr(settings, "TRUSTED_PROXY_HOPS", 0))
    if hops > 0:
        chain = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if len(chain) >= hops:
            return chain[-hops]
    return request.META.get("REMOTE_ADDR")
