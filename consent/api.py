"""Integration API of the consent ledger (mounted under /api/v1/ by config.api): presentation only.

Writes go through consent.services.consent_record / visitor_link, reads through consent.selectors. The cookie
endpoints serve the banner snippet (static/consent/cookie-consent.js): they take a publishable key, answer
CORS only for the key's allowed origins, and accept nothing but the published cookie categories
(purposes of category "cookies", APPI Art. 31 個人関連情報) for an anonymous visitor id.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, cast

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from ninja import Router, Schema, Status
from pydantic import ConfigDict, Field, StrictBool

from consent import selectors, services
from consent.models import ConsentEvent, Objection, Purpose, PurposeCategory, PurposeVersion
from crm.api import (
    BODY,
    CreatedOut,
    Error,
    ExternalId,
    IdempotencyKey,
    customer_not_found,
    customer_or_404,
    errors,
)
from crm.integrations.auth import PublishableKeyAuth, TokenAuth, origin_allowed, request_client
from crm.integrations.models import ApiScope
from crm.integrations.schemas import Moment, TextLimit
from crm.integrations.selectors import api_client_for_token
from crm.integrations.services import AnswerRecord
from crm.integrations.writes import api_write
from crm.signin.identity import client_address

router = Router(tags=["consents"])
cookie_router = Router(tags=["cookie consent"])

VisitorId = Annotated[str, TextLimit(64, min_length=8)]
Sha256Hex = Annotated[str, TextLimit(64)]
CategoryCode = Annotated[str, TextLimit(50, min_length=1)]


class EvidenceIn(Schema):
    """What proves the consent (GDPR Art. 7(1)). `text_hash` defaults to the purpose's current wording."""

    model_config = ConfigDict(extra="forbid")

    form_id: Annotated[str, TextLimit(100)] = ""
    text_hash: Sha256Hex | None = None
    source_ip: Annotated[str, TextLimit(45)] = ""
    user_agent: Annotated[str, TextLimit(500)] = ""


class ConsentIn(Schema):
    """A grant or withdrawal. Name the person by `external_id` (a customer of the client's team) or by an
    anonymous `visitor_id`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "purpose_code": "marketing_email",
                    "action": "grant",
                    "method": "opt_in",
                    "channel": "web_form",
                    "external_id": "C-1001",
                    "evidence": {"form_id": "signup-2026", "source_ip": "203.0.113.5"},
                    "occurred_at": "2026-04-01T10:00:00+09:00",
                }
            ]
        },
    )

    purpose_code: Annotated[str, TextLimit(50, min_length=1)]
    action: ConsentEvent.Action
    method: ConsentEvent.Method = ConsentEvent.Method.OPT_IN
    channel: ConsentEvent.Channel = ConsentEvent.Channel.API
    external_id: ExternalId | None = None
    visitor_id: VisitorId | None = None
    evidence: EvidenceIn = Field(default_factory=EvidenceIn)
    occurred_at: Moment | None = None


class ConsentOut(Schema):
    id: int
    purpose_code: str
    action: str
    occurred_at: dt.datetime


def _evidence(evidence: EvidenceIn) -> dict[str, Any]:
    return {k: v for k, v in evidence.model_dump().items() if v}


@router.post(
    "/consents",
    auth=TokenAuth(ApiScope.CONSENTS_WRITE),
    response={201: ConsentOut, **errors(404, 422, *BODY)},
    summary="同意・撤回を記録",
)
def consent_create(
    request: HttpRequest,
    response: HttpResponse,
    payload: ConsentIn,
    idempotency_key: str | None = IdempotencyKey,
) -> Any:
    """Append one row to the consent ledger (and update the current state)."""
    client = request_client(request)
    if not payload.external_id and not payload.visitor_id:
        raise ValidationError({"external_id": _("external_id か visitor_id のどちらかを指定してください。")})

    def answer(event: ConsentEvent) -> dict[str, Any]:
        return {
            "id": event.pk,
            "purpose_code": payload.purpose_code,
            "action": event.action,
            "occurred_at": event.occurred_at.isoformat(),
        }

    def compute(record: AnswerRecord | None = None) -> tuple[int, dict[str, Any]]:
        customer, purpose, event_id = None, None, None
        if payload.external_id:
            # The customer, the purpose and the new row's id in one round trip; 404 first, as customer_or_404.
            customer, purpose, event_id = selectors.consent_subjects(
                user=client.user,
                team_id=client.team_id,
                external_id=payload.external_id,
                purpose_code=payload.purpose_code,
                reserve_event_id=True,
            )
            if customer is None:
                raise customer_not_found()
        event = services.consent_record(
            purpose_code=payload.purpose_code,
            action=payload.action,
            method=payload.method,
            channel=payload.channel,
            customer=customer,
            visitor_id=payload.visitor_id or "",
            evidence=_evidence(payload.evidence),
            occurred_at=payload.occurred_at,
            api_client_id=client.pk,
            purpose=purpose,
            event_id=event_id,
            # With an Idempotency-Key, the answer is stored by the same statement as the row.
            companion=(lambda event: record(201, answer(event))) if record else None,
        )
        return 201, answer(event)

    # consent_record writes one statement (ledger row, audit entry, state): no transaction around it.
    return api_write(request, response, compute, idempotency_key=idempotency_key, single_statement=True)


class PurposeStateOut(Schema):
    granted: bool
    version: int
    at: dt.datetime
    channel: str


class RightOut(Schema):
    code: str  # withdraw_consent | object | object_direct_marketing | stop_use
    article: str


class PurposeBasisOut(Schema):
    legal_basis: str
    article: str
    objected: bool  # a standing objection covers this purpose (GDPR Art. 21)
    rights: list[RightOut]  # what the person can do about it, with the article


class ConsentStateOut(Schema):
    purposes: dict[str, PurposeStateOut]


class CustomerConsentStateOut(ConsentStateOut):
    basis: dict[str, PurposeBasisOut]


@router.get(
    "/customers/{external_id}/consents",
    auth=TokenAuth(ApiScope.CONSENTS_READ),
    response={200: CustomerConsentStateOut, **errors(404, 422)},
    summary="顧客の現在の同意状態",
)
def customer_consent_state(request: HttpRequest, external_id: ExternalId) -> Any:
    """Current state per purpose code; purposes the customer never answered are absent (= not granted).
    `basis`: every published purpose's lawful basis, whether a standing objection covers it, and what the
    person can do about it (withdraw consent, object, request stop-use), each with its article."""
    customer = customer_or_404(request_client(request), external_id, action="view")
    return {
        "purposes": selectors.consent_state(customer=customer),
        "basis": selectors.purpose_bases(customer=customer),
    }


@router.get(
    "/visitors/{visitor_id}/consents",
    auth=TokenAuth(ApiScope.CONSENTS_READ),
    response={200: ConsentStateOut, **errors(422)},
    summary="訪問者（Cookie ID）の現在の同意状態",
)
def visitor_consent_state(request: HttpRequest, visitor_id: VisitorId) -> Any:
    return {"purposes": selectors.visitor_consent_state(visitor_id=visitor_id)}


class ObjectionIn(Schema):
    """An objection (GDPR Art. 21) of a customer of the client's team: to one legitimate-interest purpose
    (`scope` "purpose", Art. 21(1)), or to direct marketing as a whole ("direct_marketing", Art. 21(2)–(3):
    every marketing purpose at once, never overridden)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"external_id": "C-1001", "scope": "purpose", "purpose_code": "analytics"},
                {"external_id": "C-1001", "scope": "direct_marketing"},
            ]
        },
    )

    external_id: ExternalId
    scope: Objection.Scope
    purpose_code: Annotated[str, TextLimit(50)] = ""
    occurred_at: Moment | None = None


class ObjectionOut(Schema):
    id: int
    scope: str
    purpose_code: str
    occurred_at: dt.datetime


@router.post(
    "/objections",
    auth=TokenAuth(ApiScope.CONSENTS_WRITE),
    response={201: ObjectionOut, **errors(404, 422, *BODY)},
    summary="異議（GDPR第21条）を記録",
)
def objection_create(
    request: HttpRequest,
    response: HttpResponse,
    payload: ObjectionIn,
    idempotency_key: str | None = IdempotencyKey,
) -> Any:
    """Append an objection to the objection ledger; the same standing objection again returns the first."""
    client = request_client(request)

    def compute() -> tuple[int, dict[str, Any]]:
        customer = customer_or_404(client, payload.external_id)
        objection = services.objection_record(
            customer=customer,
            scope=payload.scope,
            purpose_code=payload.purpose_code,
            source=Objection.Source.API,
            occurred_at=payload.occurred_at,
            api_client_id=client.pk,
        )
        return 201, {
            "id": objection.pk,
            "scope": objection.scope,
            "purpose_code": payload.purpose_code if objection.purpose_id else "",
            "occurred_at": objection.occurred_at.isoformat(),
        }

    return api_write(request, response, compute, idempotency_key=idempotency_key)


class VisitorLinkIn(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"external_id": "C-1001"}]})

    external_id: ExternalId


class VisitorLinkOut(Schema):
    copied: int


@router.post(
    "/visitors/{visitor_id}/link",
    auth=TokenAuth(ApiScope.CONSENTS_WRITE),
    response={200: VisitorLinkOut, **errors(404, 422, *BODY)},
    summary="訪問者IDを顧客に紐付け、Cookie同意を引き継ぐ",
)
def visitor_link(
    request: HttpRequest,
    response: HttpResponse,
    visitor_id: VisitorId,
    payload: VisitorLinkIn,
    idempotency_key: str | None = IdempotencyKey,
) -> Any:
    client = request_client(request)

    def compute() -> tuple[int, dict[str, Any]]:
        customer = customer_or_404(client, payload.external_id)
        return 200, {"copied": services.visitor_link(visitor_id=visitor_id, customer=customer)}

    return api_write(request, response, compute, idempotency_key=idempotency_key)


# --- cookie banner (publishable key) ----------------------------------------------------------------


class CookieConsentIn(Schema):
    """The visitor's choice per cookie category code: true = accepted, false = refused."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "visitor_id": "5f0c2a9e-3b1d-4c8e-9f27-1a2b3c4d5e6f",
                    "categories": {"cookies_analytics": True, "cookies_advertising": False},
                }
            ]
        },
    )

    visitor_id: VisitorId
    categories: dict[CategoryCode, StrictBool] = Field(min_length=1, max_length=20)


class CookieConsentOut(Schema):
    recorded: list[CreatedOut]


class CookieCategoryOut(Schema):
    code: str
    title: str
    description: str
    version: int
    text_hash: str


def _cookie_purposes() -> dict[str, Purpose]:
    return {
        p.code: p
        for p in Purpose.objects.select_related("current_version").filter(
            category=PurposeCategory.COOKIES, is_published=True, current_version__isnull=False
        )
    }


def _cors(request: HttpRequest, response: HttpResponse) -> None:
    origin = request.headers.get("Origin")
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        response["Vary"] = "Origin"


@cookie_router.get(
    "/cookie-consents/categories",
    auth=PublishableKeyAuth(),
    response={200: list[CookieCategoryOut], **errors(422)},
    summary="バナーに表示するCookieカテゴリ（公開キー）",
)
def cookie_categories(request: HttpRequest, response: HttpResponse, lang: Literal["ja", "en"] = "ja") -> Any:
    """The categories in the page's language (the banner passes `<html lang>`), each with the version and
    text hash its consent will be recorded against."""
    _cors(request, response)
    lang_en = lang == "en"
    categories = []
    for code, p in _cookie_purposes().items():
        version = cast(PurposeVersion, p.current_version)  # _cookie_purposes reads those with one
        categories.append(
            {
                "code": code,
                "title": version.title_en if lang_en else version.title_ja,
                "description": version.description_en if lang_en else version.description_ja,
                "version": version.version,
                "text_hash": version.text_hash,
            }
        )
    return categories


@cookie_router.post(
    "/cookie-consents",
    auth=PublishableKeyAuth(),
    response={201: CookieConsentOut, **errors(422, *BODY)},
    summary="Cookie同意を記録（公開キー・Cookieカテゴリのみ）",
)
def cookie_consent_create(
    request: HttpRequest,
    response: HttpResponse,
    payload: CookieConsentIn,
    idempotency_key: str | None = IdempotencyKey,
) -> Any:
    """Record the visitor's choice for each cookie category. Anything but a published cookie category is
    refused as a whole (a publishable key must not be able to grant marketing e-mail consent)."""
    client = request_client(request)
    _cors(request, response)
    purposes = _cookie_purposes()
    unknown = sorted(code for code in payload.categories if code not in purposes)
    if unknown:
        raise ValidationError(
            {
                "categories": _("Cookieカテゴリとして公表されていないコードです: %(codes)s")
                % {"codes": ", ".join(unknown)}
            }
        )
    evidence = {
        "source_ip": client_address(request) or "",
        "user_agent": (request.headers.get("User-Agent") or "")[:500],
        "form_id": "cookie-banner",
    }

    def compute() -> tuple[int, dict[str, Any]]:
        recorded = []
        for code, accepted in sorted(payload.categories.items()):
            event = services.consent_record(
                purpose_code=code,
                action=ConsentEvent.Action.GRANT if accepted else ConsentEvent.Action.WITHDRAW,
                method=ConsentEvent.Method.OPT_IN,
                channel=ConsentEvent.Channel.COOKIE_BANNER,
                visitor_id=payload.visitor_id,
                evidence=evidence,
                api_client_id=client.pk,
            )
            recorded.append({"id": event.pk})
        return 201, {"recorded": recorded}

    return api_write(request, response, compute, idempotency_key=idempotency_key)


@cookie_router.api_operation(
    ["OPTIONS"], "/cookie-consents", include_in_schema=False, response={204: None, 403: Error}
)
def cookie_consent_preflight(request: HttpRequest, response: HttpResponse, key: str = "") -> Any:
    """CORS preflight: allowed only for an origin listed on the publishable key in the query string."""
    client = api_client_for_token(key)
    origin = request.headers.get("Origin")
    if client is None or not client.has_scope(ApiScope.COOKIES_WRITE) or not origin_allowed(client, origin):
        return Status(403, {"detail": _("このオリジンからの送信は許可されていません。")})
    response["Access-Control-Allow-Origin"] = origin or ""
    response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    response["Access-Control-Allow-Headers"] = "Content-Type, Idempotency-Key"
    response["Access-Control-Max-Age"] = "600"
    response["Vary"] = "Origin"
    return Status(204, None)
