"""Reads of the integration API area."""

from __future__ import annotations

import hmac

from django.contrib.auth import get_user_model

from crm import rawsql
from crm.integrations.models import ApiClient
from crm.integrations.services import token_hash


def _client_sql() -> str:
    """A live client by token prefix, with its service user (one statement: this runs on every API call).
    What the user may reach is asked of the gate afterwards, inside each request's own statement."""
    user = get_user_model()
    return (
        f"SELECT {rawsql.columns(ApiClient, 'c')}, {rawsql.columns(user, 'u')}"  # noqa: S608
        f' FROM "{ApiClient._meta.db_table}" c JOIN "{user._meta.db_table}" u ON u.id = c.user_id'
        " WHERE c.token_prefix = %s AND c.revoked_at IS NULL AND u.is_active"
    )


def api_client_for_token(token: str) -> ApiClient | None:
    """The live client whose token this is, or None (unknown, malformed, wrong secret or revoked).

    One indexed lookup by the public prefix, then a constant-time comparison of the hashes, so the response
    time does not tell how much of a guessed token was right.
    """
    prefix, sep, secret = token.strip().partition(".")
    if not sep or not secret or len(prefix) > 24 or len(token) > 200:
        return None
    row = rawsql.fetch_one(_client_sql(), [prefix])
    client = None
    if row is not None:
        client = rawsql.load(ApiClient, row)
        user_at = rawsql.width(ApiClient)
        client.user = rawsql.load(get_user_model(), row, user_at)
    if client is None or not hmac.compare_digest(client.token_hash, token_hash(token.strip())):
        return None
    return client
