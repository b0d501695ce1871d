"""Integration API of breach response (mounted under /api/v1/ by config.api): presentation only.

`POST /incidents` lets a monitoring system open an incident (漏えい等事案) the moment it detects one, with a
token holding the `incidents:write` scope. The write goes through incidents.services.incident_create; the
answer carries the incident's number, status and whether the PPC must be told — never the texts sent (a
title or description may carry what a monitoring rule matched, which could be personal data).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema
from pydantic import ConfigDict, Field, StrictBool, StrictInt

from crm.api import BODY, errors
from crm.api import IdempotencyKey as IdempotencyKeyHeader
from crm.classification import DataClass
from crm.integrations.auth import TokenAuth, request_client
from crm.integrations.models import ApiScope
from crm.integrations.schemas import Moment, TextLimit
from crm.integrations.writes import api_write
from incidents import services
from incidents.models import Incident

router = Router(tags=["incidents"])

MAX_SYSTEMS = 50
MAX_AFFECTED = 1_000_000_000


class IncidentIn(Schema):
    """A suspected breach as a monitoring system sees it. `aware_at` (when the company became aware: the
    clocks of 規則8 and GDPR Art. 33 start there) defaults to `discovered_at`, the earlier reading."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "WAF: 管理画面への不正ログイン試行の成功",
                    "kind": "unauthorised_access",
                    "discovered_at": "2026-04-01T10:00:00+09:00",
                    "systems": ["crm.Customer"],
                    "data_classes": ["direct"],
                    "unlawful_purpose": True,
                    "affected_estimate": 1200,
                }
            ]
        },
    )

    title: Annotated[str, TextLimit(200, min_length=1)]
    description: Annotated[str, TextLimit(5000)] = ""
    kind: Incident.Kind
    occurred_at: Moment | None = None
    discovered_at: Moment
    aware_at: Moment | None = None
    systems: list[Annotated[str, TextLimit(100, min_length=1)]] = Field(
        default_factory=list, max_length=MAX_SYSTEMS
    )
    data_classes: list[DataClass] = Field(default_factory=list, max_length=len(DataClass.values))
    special_care: StrictBool = False
    financial_damage: StrictBool = False
    unlawful_purpose: StrictBool = False
    encrypted: StrictBool = False
    gdpr_applies: StrictBool = False
    affected_estimate: StrictInt = Field(0, ge=0, le=MAX_AFFECTED)


class IncidentOut(Schema):
    id: int
    reference: str
    status: str
    appi_reportable: bool
    next_deadline_at: dt.datetime | None


@router.post(
    "/incidents",
    auth=TokenAuth(ApiScope.INCIDENTS_WRITE),
    response={201: IncidentOut, **errors(422, *BODY)},
    summary="漏えい等事案を登録（監視システム）",
)
def incident_open(
    request: HttpRequest,
    response: HttpResponse,
    payload: IncidentIn,
    idempotency_key: str | None = IdempotencyKeyHeader,
) -> Any:
    """Open an incident (status 検知) for the security team; its clocks start at `aware_at`."""
    client = request_client(request)

    def compute() -> tuple[int, dict[str, Any]]:
        facts = payload.model_dump(exclude={"affected_estimate", "aware_at"})
        facts["aware_at"] = payload.aware_at or payload.discovered_at
        facts["affected_count"] = payload.affected_estimate
        facts["data_classes"] = [str(c) for c in payload.data_classes]
        facts["kind"] = str(payload.kind)
        try:
            incident = services.incident_create(actor=client.user, api_client=client, **facts)
        except services.IncidentError as error:
            raise ValidationError(str(error)) from error
        return 201, {
            "id": incident.pk,
            "reference": incident.reference,
            "status": incident.status,
            "appi_reportable": incident.clocks().appi_reportable,
            "next_deadline_at": incident.next_deadline_at.isoformat() if incident.next_deadline_at else None,
        }

    return api_write(request, response, compute, idempotency_key=idempotency_key)
