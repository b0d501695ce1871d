"""Authentication of the integration API: bearer tokens with scopes, publishable cookie keys, rate limit.

Order of checks for every call: token known and not revoked (else 401) → rate limit (else 429, counted for
every authenticated call) → scope (else 403) → origin, for publishable keys (else 403) → last-use time.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja.errors import AuthorizationError, HttpError
from ninja.security import APIKeyQuery, HttpBearer

from crm.django_adapter import prime_permission_caches
from crm.integrations.models import ApiClient, ApiScope
from crm.integrations.ratelimit import rate_limit_hit
from crm.integrations.selectors import api_client_for_token
from crm.integrations.services import api_client_touch
from crm.signin.identity import client_address


class RateLimited(HttpError):
    """429 with the seconds until the client's window resets (sent as Retry-After)."""

    def __init__(self, retry_after: int, limit: int) -> None:
        self.retry_after = retry_after
        self.limit = limit
        super().__init__(
            429, _("リクエストが多すぎます。%(seconds)s秒後に再試行してください。") % {"seconds": retry_after}
        )


# Model permissions of service users, per process: (loaded at, user perms, group perms). Loading them
# costs two queries per request otherwise. A change to a service user's role reaches the API within this
# many seconds; revoking the token and team membership (checked in SQL on every request) act at once.
PERMISSION_CACHE_SECONDS = 30.0
_permission_cache: dict[int, tuple[float, set[str], set[str]]] = {}


def _load_cached_permissions(client: ApiClient) -> None:
    """Fill Django's own per-user permission caches from the process cache (crm.django_adapter)."""
    user = client.user
    now = time.monotonic()
    hit = _permission_cache.get(user.pk)
    if hit is None or now - hit[0] > PERMISSION_CACHE_SECONDS:
        backend = ModelBackend()
        hit = (now, set(backend.get_user_permissions(user)), set(backend.get_group_permissions(user)))
        _permission_cache[user.pk] = hit
    prime_permission_caches(user, user_perms=hit[1], group_perms=hit[2])


def _admit(request: HttpRequest, client: ApiClient, scope: str) -> ApiClient:
    decision = rate_limit_hit(bucket=str(client.pk), limit=client.effective_rate_limit())
    if not decision.allowed:
        raise RateLimited(decision.retry_after, decision.limit)
    if client.is_publishable:
        # Anyone can copy a public key: a per-address budget keeps one abuser from using up the site's.
        per_address = int(getattr(settings, "API_PUBLIC_RATE_LIMIT_PER_ADDRESS", 60))
        address = client_address(request) or ""
        decision = rate_limit_hit(bucket=f"{client.pk}:{address}", limit=per_address)
        if not decision.allowed:
            raise RateLimited(decision.retry_after, decision.limit)
    if not client.has_scope(scope):
        raise AuthorizationError(403, _("このトークンには %(scope)s の権限がありません。") % {"scope": scope})
    api_client_touch(client=client)
    _load_cached_permissions(client)
    request.api_client = client  # type: ignore[attr-defined]  # stub gap: own request attribute
    return client


def request_client(request: HttpRequest) -> ApiClient:
    """The API client an endpoint's authentication admitted (django-ninja's request.auth)."""
    client: ApiClient = request.auth  # type: ignore[attr-defined]  # stub gap: django-ninja sets request.auth
    return client


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <token>` of a server-side client holding `scope`."""

    def __init__(self, scope: ApiScope) -> None:
        self.scope = scope
        super().__init__()

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        client = api_client_for_token(token)
        if client is None or client.is_publishable:
            return None
        return _admit(request, client, self.scope)


def origin_allowed(client: ApiClient, origin: str | None) -> bool:
    """A browser always sends Origin on a cross-site POST; a request without one is not from a page."""
    return bool(origin) and origin in client.allowed_origins


class PublishableKeyAuth(APIKeyQuery):
    """`?key=pk_…` of a publishable client: cookie categories only, and only from its allowed origins.

    The key is public by design (it sits in the page), so the origin check and the narrow endpoint are what
    limit abuse; the key travels in the query string so that the CORS preflight, which carries no headers of
    ours, can be answered for the right client.
    """

    param_name = "key"

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        client = api_client_for_token(key or "")
        if client is None:
            return None
        _admit(request, client, ApiScope.COOKIES_WRITE)
        if not origin_allowed(client, request.headers.get("Origin")):
            raise AuthorizationError(403, _("このオリジンからの送信は許可されていません。"))
        return client
