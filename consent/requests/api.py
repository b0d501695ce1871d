"""Integration API of the request desk (mounted under /api/v1/ by config.api): presentation only.

`POST /requests` takes a data-subject request received by another system (a member site's own form, a call
centre's tool) with the `requests:write` scope. It enters the desk's queue at once, unassigned: the support
leads and the privacy officer see it and give it a handler. Naming a customer of the client's team by
`external_id` links it (the gate decides, as for every write); the requester's identifiers are otherwise
matched by the handler.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from django.core.validators import validate_email
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Router, Schema
from pydantic import ConfigDict

from consent.requests import services
from consent.requests.models import DisclosureMethod, Jurisdiction, Language, RequestKind
from crm.api import BODY, ExternalId, IdempotencyKey, customer_or_404, errors
from crm.integrations.auth import TokenAuth, request_client
from crm.integrations.models import ApiScope
from crm.integrations.schemas import Moment, TextLimit
from crm.integrations.writes import api_write

router = Router(tags=["data-subject requests"])


class RequesterIn(Schema):
    """Who made the request, as they gave it (matched to customers through the blind indexes)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, TextLimit(200)] = ""
    email: Annotated[str, TextLimit(254)] = ""
    phone: Annotated[str, TextLimit(30)] = ""
    member_no: Annotated[str, TextLimit(20)] = ""


class RequestIn(Schema):
    """A data-subject request (開示等請求) received elsewhere."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "disclosure",
                    "jurisdiction": "appi",
                    "received_at": "2026-04-01T10:00:00+09:00",
                    "language": "ja",
                    "disclosure_method": "electronic",
                    "requester": {"name": "山田 太郎", "email": "taro@example.com"},
                    "external_id": "C-1001",
                }
            ]
        },
    )

    kind: RequestKind
    jurisdiction: Jurisdiction = Jurisdiction.APPI
    received_at: Moment | None = None
    language: Language = Language.JA
    disclosure_method: DisclosureMethod | None = None
    requester: RequesterIn
    details: Annotated[str, TextLimit(4000)] = ""
    external_id: ExternalId | None = None


class RequestOut(Schema):
    id: int
    state: str
    received_at: dt.datetime
    appi_due: dt.date | None
    gdpr_due: dt.date | None
    due_on: dt.date | None


@router.post(
    "/requests",
    auth=TokenAuth(ApiScope.REQUESTS_WRITE),
    response={201: RequestOut, **errors(404, 422, *BODY)},
    summary="開示等請求を受け付ける",
)
def request_create(
    request: HttpRequest,
    response: HttpResponse,
    payload: RequestIn,
    idempotency_key: str | None = IdempotencyKey,
) -> Any:
    """The request enters the queue with its legal clocks running from `received_at` (default: now)."""
    client = request_client(request)

    def compute() -> tuple[int, dict[str, Any]]:
        customer = (
            customer_or_404(client, payload.external_id, action="view") if payload.external_id else None
        )
        if payload.requester.email:
            validate_email(payload.requester.email)
        created = services.request_create(
            kind=payload.kind,
            channel="api",
            received_at=payload.received_at or timezone.now(),
            jurisdiction=payload.jurisdiction,
            language=payload.language,
            disclosure_method=payload.disclosure_method or "",
            requester_name=payload.requester.name,
            requester_email=payload.requester.email,
            requester_phone=payload.requester.phone,
            requester_member_no=payload.requester.member_no,
            details=payload.details,
            customer=customer,
            actor=client.user,
        )
        return 201, {
            "id": created.pk,
            "state": created.state,
            "received_at": created.received_at.isoformat(),
            "appi_due": created.appi_due.isoformat() if created.appi_due else None,
            "gdpr_due": created.gdpr_due.isoformat() if created.gdpr_due else None,
            "due_on": created.due_on.isoformat() if created.due_on else None,
        }

    return api_write(request, response, compute, idempotency_key=idempotency_key)
