"""Integration API of the customer record (mounted under /api/v1/ by config.api): presentation only.

Customers are read and written through `Customer.objects.restrict(<client's service user>, …)` and
crm.services, exactly as the admin does; answers carry ids only, never personal values.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from ninja import Header, Router, Schema
from ninja.errors import HttpError
from pydantic import ConfigDict, Field, StrictInt

from crm import services
from crm.choices import CollectionChannel
from crm.integrations.auth import TokenAuth, request_client
from crm.integrations.models import ApiClient, ApiScope
from crm.integrations.schemas import BirthDate, JsonObject, Moment, Prefecture, TextLimit
from crm.integrations.writes import api_write
from crm.models import Customer, CustomerEvent
from crm.permissions import team_open_to
from crm.selectors import customer_ref

router = Router(tags=["customers"])
events_router = Router(tags=["events"])

ExternalId = Annotated[str, TextLimit(64, min_length=1)]
IdempotencyKey = Header(
    None,
    alias="Idempotency-Key",
    max_length=255,
    description="再送しても一度だけ処理させるためのキー（UUID 等）。"
    "同じキー・同じ内容なら同じ応答を返します。",
)


class Error(Schema):
    detail: Any


# Error answers of an operation taking a JSON body: 413 body over DATA_UPLOAD_MAX_MEMORY_SIZE, 415 not sent as
# application/json (crm.integrations.parser).
BODY = (413, 415)


def errors(*codes: int) -> dict[int, type[Error]]:
    """Documented error answers of an operation (400: body is not JSON; 401/403: token; 429: rate limit)."""
    return dict.fromkeys((400, 401, 403, 429, *codes), Error)


class CustomerIn(Schema):
    """Fields to set. On create `family_name` and `collection_channel` are required; on update only the fields
    sent are changed. Values are validated as in the admin (e-mail, phone, kana, My Number refusal)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "family_name": "山田",
                    "given_name": "太郎",
                    "family_name_kana": "ヤマダ",
                    "given_name_kana": "タロウ",
                    "email": "taro.yamada@example.jp",
                    "phone": "090-1234-5678",
                    "collection_channel": "web_form",
                }
            ]
        },
    )

    family_name: Annotated[str, TextLimit(50)] | None = None
    given_name: Annotated[str, TextLimit(50)] | None = None
    family_name_kana: Annotated[str, TextLimit(50)] | None = None
    given_name_kana: Annotated[str, TextLimit(50)] | None = None
    email: Annotated[str, TextLimit(254)] | None = None
    phone: Annotated[str, TextLimit(32)] | None = None
    postal_code: Annotated[str, TextLimit(8)] | None = None
    prefecture: Prefecture | None = None
    address: Annotated[str, TextLimit(300)] | None = None
    birth_date: BirthDate | None = None
    gender: Literal["", "female", "male", "other"] | None = None
    member_no: Annotated[str, TextLimit(20)] | None = None
    app_user_id: Annotated[str, TextLimit(100)] | None = None
    device_id: Annotated[str, TextLimit(100)] | None = None
    pos_card_no: Annotated[str, TextLimit(30)] | None = None
    preferences: JsonObject | None = None
    collection_channel: CollectionChannel | None = None
    collected_at: Moment | None = None
    acquisition_note: Annotated[str, TextLimit(1000)] | None = None


class CustomerOut(Schema):
    id: int
    created: bool


def _customer_for_client(client: ApiClient, external_id: str, action: str = "change") -> Customer | None:
    """The client's team's customer with this external id (through the one permission gate), or None.

    External ids are unique per team: the client's team is their namespace, so another team's customer with
    the same id is never found, blocks nothing and cannot be told apart from no customer at all."""
    return (
        Customer.objects.restrict(client.user, action)
        .filter(team_id=client.team_id, external_id=external_id)
        .first()
    )


def customer_or_404(client: ApiClient, external_id: str, action: str = "change") -> Customer:
    """The customer a record refers to (ids only loaded: crm.selectors.customer_ref), or 404 when the client
    may not reach it."""
    customer = customer_ref(user=client.user, team_id=client.team_id, external_id=external_id, action=action)
    if customer is None:
        raise customer_not_found()
    return customer


def customer_not_found() -> HttpError:
    """The 404 of an external id the client may not reach (or that does not exist: the two look alike)."""
    return HttpError(404, _("この外部IDの顧客は見つかりません。"))


@router.put(
    "/customers/{external_id}",
    auth=TokenAuth(ApiScope.CUSTOMERS_WRITE),
    response={200: CustomerOut, 201: CustomerOut, **errors(404, 409, 422, *BODY)},
    summary="顧客を外部IDで登録・更新",
)
def customer_upsert(
    request: HttpRequest,
    response: HttpResponse,
    external_id: ExternalId,
    payload: CustomerIn,
    idempotency_key: str | None = IdempotencyKey,
) -> Any:
    """Create the customer with this external id in the client's team, or update the one it has."""
    client = request_client(request)
    fields = payload.model_dump(exclude_unset=True)
    # null means "not sent": encrypted text fields store "" for empty, never NULL.
    fields = {k: v for k, v in fields.items() if v is not None or k == "birth_date"}

    def compute() -> tuple[int, dict[str, Any]]:
        customer = _customer_for_client(client, external_id)
        try:
            if customer is None:
                if not team_open_to(client.user, "change", client.team_id):
                    # The same answer whatever the id: a client may not create where it may not change.
                    raise HttpError(403, _("このクライアントはチームの顧客を登録・更新できません。"))
                # Free in the client's team whatever other teams use (unique per team): nothing here can
                # tell the client that another team has a customer with this id. A concurrent create of the
                # same id loses on the (external id, team) constraint: 409 below.
                customer = services.customer_create(team=client.team, external_id=external_id, **fields)
                return 201, {"id": customer.pk, "created": True}
            if customer.status in (Customer.Status.ANONYMISED, Customer.Status.STOP_USE):
                raise HttpError(409, _("匿名化済みまたは利用停止中（法第35条）の顧客は更新できません。"))
            services.customer_update(customer=customer, **fields)
            return 200, {"id": customer.pk, "created": False}
        except IntegrityError as exc:
            # A concurrent create with the same external id or member number won the race.
            raise HttpError(409, _("同じ外部IDまたは会員番号の顧客が同時に登録されました。")) from exc

    return api_write(request, response, compute, idempotency_key=idempotency_key)


class EventIn(Schema):
    """A behavioural event. Name the customer by `external_id` or the anonymous `visitor_id` (or both)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "page_view",
                    "occurred_at": "2026-04-01T10:00:00+09:00",
                    "external_id": "C-1001",
                    "properties": {"path": "/products/42"},
                }
            ]
        },
    )

    kind: CustomerEvent.Kind
    occurred_at: Moment
    external_id: ExternalId | None = None
    visitor_id: Annotated[str, TextLimit(64)] | None = None
    properties: JsonObject = Field(default_factory=dict)
    source: Annotated[str, TextLimit(64)] = ""


class CreatedOut(Schema):
    id: int


@events_router.post(
    "/events",
    auth=TokenAuth(ApiScope.EVENTS_WRITE),
    response={201: CreatedOut, **errors(404, 422, *BODY)},
    summary="行動イベント（ページ閲覧・購入など）を記録",
)
def event_create(
    request: HttpRequest,
    response: HttpResponse,
    payload: EventIn,
    idempotency_key: str | None = IdempotencyKey,
) -> Any:
    client = request_client(request)

    def compute() -> tuple[int, dict[str, Any]]:
        customer = customer_or_404(client, payload.external_id) if payload.external_id else None
        event = services.event_record(
            kind=payload.kind,
            occurred_at=payload.occurred_at,
            customer=customer,
            visitor_id=payload.visitor_id or "",
            properties=payload.properties,
            source=payload.source or client.name,
        )
        return 201, {"id": event.pk}

    return api_write(request, response, compute, idempotency_key=idempotency_key)


class PurchaseIn(Schema):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "order_no": "WEB-2026-000123",
                    "amount": 5400,
                    "channel": "web_form",
                    "purchased_at": "2026-04-01T10:00:00+09:00",
                    "external_id": "C-1001",
                }
            ]
        },
    )

    order_no: Annotated[str, TextLimit(40, min_length=1)]
    amount: StrictInt = Field(ge=0, le=999_999_999_999)
    currency: Literal["JPY", "USD", "EUR"] = "JPY"
    channel: CollectionChannel
    purchased_at: Moment
    external_id: ExternalId | None = None


@events_router.post(
    "/purchases",
    auth=TokenAuth(ApiScope.EVENTS_WRITE),
    response={201: CreatedOut, **errors(404, 409, 422, *BODY)},
    summary="購買を記録",
)
def purchase_create(
    request: HttpRequest,
    response: HttpResponse,
    payload: PurchaseIn,
    idempotency_key: str | None = IdempotencyKey,
) -> Any:
    client = request_client(request)

    def compute() -> tuple[int, dict[str, Any]]:
        customer = customer_or_404(client, payload.external_id) if payload.external_id else None
        try:
            purchase = services.purchase_record(
                team=client.team,
                customer=customer,
                order_no=payload.order_no,
                amount=payload.amount,
                currency=payload.currency,
                channel=payload.channel,
                purchased_at=payload.purchased_at,
            )
        except IntegrityError as exc:
            raise HttpError(409, _("この注文番号は既に登録されています。")) from exc
        return 201, {"id": purchase.pk}

    return api_write(request, response, compute, idempotency_key=idempotency_key)
