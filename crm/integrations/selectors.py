"""Reads of the integration API area."""

from __future__ import annotations

import hmac

from crm.integrations.models import ApiClient
from crm.integrations.services import token_hash


def api_client_for_token(token: str) -> ApiClient | None:
    """The live client whose token this is, or None (unknown, malformed, wrong secret or revoked).

    One indexed lookup by the public prefix, then a constant-time comparison of the hashes, so the response
    time does not tell how much of a guessed token was right.
    """
    prefix, sep, secret = token.strip().partition(".")
    if not sep or not secret or len(prefix) > 24 or len(token) > 200:
        return None
    client = (
        ApiClient.objects.select_related("user")
        .filter(token_prefix=prefix, revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if client is None or not hmac.compare_digest(client.token_hash, token_hash(token.strip())):
        return None
    return client
