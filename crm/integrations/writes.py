"""How every write of the integration API runs: as the client's service user, once per Idempotency-Key."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _
from ninja import Status
from ninja.errors import HttpError

from crm.audit.actors import audit_actor
from crm.integrations.auth import request_client
from crm.integrations.services import idempotent_call, idempotent_single_statement
from crm.signin.identity import client_address

# Visible ASCII, as the IETF Idempotency-Key draft and common practice (UUIDs, ULIDs) expect.
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
REPLAYED_HEADER = "Idempotent-Replayed"


def request_fingerprint(request: HttpRequest) -> str:
    """Keyed hash of what the request asks for: a stolen record does not let anyone test guesses of a body."""
    method = request.method or ""  # typed Optional; a request being handled always has one
    value = b"\x1f".join([method.encode(), request.get_full_path().encode(), request.body])
    return salted_hmac("crm.api.idempotency", value, algorithm="sha256").hexdigest()


def api_write(
    request: HttpRequest,
    response: HttpResponse,
    compute: Callable[..., tuple[int, dict[str, Any]]],
    *,
    idempotency_key: str | None,
    single_statement: bool = False,
) -> Status:
    """Run one API write in a transaction, audited with the client's service user as actor.

    With an Idempotency-Key the first answer is stored and a retry (same key, same request) gets it back
    with `Idempotent-Replayed: true` and no second write; the same key with another request is a 422.
    `single_statement`: `compute(record=None)` writes with one statement (after reads), which is atomic by
    itself, so no transaction is opened around it; with a key it is handed `record` and puts the stored
    answer into that statement (crm.integrations.services.idempotent_single_statement).
    """
    client = request_client(request)
    if idempotency_key is not None and not _KEY.match(idempotency_key):
        raise HttpError(422, _("Idempotency-Key は1〜255文字の英数字・記号で指定してください。"))
    # The client's service user replaces whatever the request's auditlog context names (swapped into that
    # context, never a nested one: crm.audit.actors).
    with audit_actor(client.user, remote_addr=client_address(request), replace=True):
        if idempotency_key is None:
            if single_statement:
                return Status(*compute())
            with transaction.atomic():
                return Status(*compute())
        call = idempotent_single_statement if single_statement else idempotent_call
        status, body, replayed = call(
            client=client,
            key=idempotency_key,
            fingerprint=request_fingerprint(request),
            compute=compute,
        )
    if replayed:
        response[REPLAYED_HEADER] = "true"
    return Status(status, body)
