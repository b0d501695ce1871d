"""Replays the outside probe of the integration API (issue #13): nested, odd-typed and odd-Content-Type
bodies, oversized bodies and paths in the request log. Each is refused with a 4xx in the API's own JSON error
shape, never a 500, and nothing is written."""

from __future__ import annotations

import json
import logging

import pytest
from django.test import Client

from consent.models import ConsentEvent
from crm.integrations.schemas import MAX_JSON_DEPTH
from crm.models import AuditEntry, Customer, CustomerEvent, Purchase
from tests.api_support import ORIGIN, messages_of
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

NEW = {"family_name": "佐藤", "collection_channel": "web_form"}
EVENT = {"kind": "page_view", "occurred_at": "2026-04-01T10:00:00+09:00", "visitor_id": "v-123456789"}
PURCHASE = {
    "order_no": "WEB-1",
    "amount": 5400,
    "channel": "web_form",
    "purchased_at": "2026-04-01T10:00:00+09:00",
}
CONSENT = {"purpose_code": "marketing_email", "action": "grant", "visitor_id": "visitor-0001"}


def _written() -> dict[str, int]:
    return {
        m.__name__: m.objects.count() for m in (Customer, CustomerEvent, Purchase, ConsentEvent, AuditEntry)
    }


def _nested(depth: int) -> dict:
    """A JSON object `depth` levels deep: {"a": {"a": … {"a": 1}}} counts as `depth` objects."""
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value  # type: ignore[return-value]


def _is_api_error(response, status: int) -> bool:
    return (
        response.status_code == status
        and response["Content-Type"].startswith("application/json")
        and "detail" in response.json()
    )


# --- nested JSON ------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [100, 500])
def test_deeply_nested_event_properties_are_422_not_500(api, depth):
    # given event properties nested as deep as the probe sent (a few KB of body)
    before = _written()
    body = {**EVENT, "properties": _nested(depth)}
    # when sent
    response = api.post("/events", body)
    # then refused on that field, nothing stored
    assert _is_api_error(response, 422)
    assert "properties" in messages_of(response)
    assert _written() == before


def test_deeply_nested_customer_preferences_are_422_not_500(api):
    # given customer preferences nested 600 levels deep
    before = _written()
    # when the customer is sent
    response = api.put("/customers/EXT-DEEP", {**NEW, "preferences": _nested(600)})
    # then refused on that field, nothing stored
    assert _is_api_error(response, 422)
    assert "preferences" in messages_of(response)
    assert _written() == before


def test_json_depth_limit_is_exact(api):
    # given properties at the depth limit and one level beyond it (lists count as levels too)
    at_limit = _nested(MAX_JSON_DEPTH)
    beyond = {"a": [_nested(MAX_JSON_DEPTH - 1)]}
    # when each is sent
    accepted = api.post("/events", {**EVENT, "properties": at_limit})
    refused = api.post("/events", {**EVENT, "properties": beyond})
    # then the first is stored, the second refused with a message naming the limit
    assert accepted.status_code == 201
    assert refused.status_code == 422
    assert str(MAX_JSON_DEPTH) in messages_of(refused)["properties"]


@pytest.mark.parametrize("depth", [950, 10_000])
def test_a_body_nested_beyond_the_parser_is_422(api, depth):
    # given a body nested as deep as Python's recursion limit, or far deeper (20 KB of brackets)
    before = _written()
    body = json.dumps(EVENT)[:-1] + ', "properties": {"a": ' + "[" * depth + "]" * depth + "}}"
    # when sent
    response = api.post("/events", body)
    # then 422 in the API's field-error shape, nothing stored
    assert _is_api_error(response, 422)
    assert response.json()["detail"][0]["loc"][0] == "body"
    assert _written() == before


# --- Content-Type -----------------------------------------------------------------------------------


ODD_CONTENT_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "image/png",
    "application/json-patch+json",
    "application/json; charset=latin-1",
    "",  # none at all
]


def _post_raw(token: str, path: str, body: bytes, content_type: str, method: str = "post"):
    # CONTENT_TYPE in the WSGI environ overrides the test client's own (an empty one = no header).
    return Client().generic(
        method.upper(),
        f"/api/v1{path}",
        body,
        headers={"Authorization": f"Bearer {token}"},
        CONTENT_TYPE=content_type,
    )


@pytest.mark.parametrize("content_type", ODD_CONTENT_TYPES)
def test_a_json_body_with_another_content_type_is_415(api_client_record, content_type):
    # given a valid JSON body labelled as something else (or not labelled)
    _client, token = api_client_record
    before = _written()
    # when it is sent to each kind of write
    answers = [
        _post_raw(token, "/events", json.dumps(EVENT).encode(), content_type),
        _post_raw(token, "/customers/EXT-CT", json.dumps(NEW).encode(), content_type, method="put"),
        _post_raw(token, "/consents", json.dumps(CONSENT).encode(), content_type),
    ]
    # then each is refused as an unsupported media type, in the API's shape, and nothing is stored
    assert [a.status_code for a in answers] == [415, 415, 415]
    assert all(_is_api_error(a, 415) for a in answers)
    assert _written() == before


def test_cookie_banner_with_another_content_type_is_415(publishable_client):
    # given the banner's body sent as text/plain (a "simple" CORS request that skips the preflight)
    _client, key = publishable_client
    body = json.dumps({"visitor_id": "visitor-0002", "categories": {"cookies_analytics": True}})
    # when sent
    response = Client().post(
        f"/api/v1/cookie-consents?key={key}", body, content_type="text/plain", headers={"Origin": ORIGIN}
    )
    # then refused, nothing recorded
    assert _is_api_error(response, 415)
    assert not ConsentEvent.objects.exists()


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_json_with_or_without_utf8_charset_is_accepted(api_client_record, content_type):
    # given a JSON body labelled application/json, with or without charset=utf-8
    _client, token = api_client_record
    # when sent
    response = _post_raw(token, "/events", json.dumps(EVENT).encode(), content_type)
    # then it is stored
    assert response.status_code == 201


# --- loose types ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        1733000000,  # a Unix time
        -1,  # once stored as 1969-12-31
        "1733000000",  # a Unix time as text
        1733000000.5,
        True,
        "2026-04-01 10:00:00+09:00",  # not RFC 3339 (space)
        "2026-04-01T10:00+09:00",  # no seconds
        "2026-04-01",  # a date where a timestamp is expected
        "1899-12-31T23:59:59Z",  # before the plausible range
    ],
)
def test_event_time_must_be_an_rfc3339_timestamp(api, moment):
    # given an event whose time is not an RFC 3339 timestamp with an offset in a sane range
    before = _written()
    # when sent to the events, purchases and consents
    answers = [
        api.post("/events", {**EVENT, "occurred_at": moment}),
        api.post("/purchases", {**PURCHASE, "purchased_at": moment}),
        api.post("/consents", {**CONSENT, "occurred_at": moment}),
    ]
    # then each is refused on the time field, nothing stored
    assert [a.status_code for a in answers] == [422, 422, 422]
    assert [list(messages_of(a)) for a in answers] == [["occurred_at"], ["purchased_at"], ["occurred_at"]]
    assert _written() == before


@pytest.mark.parametrize("moment", ["2026-04-01T10:00:00+09:00", "2026-04-01T01:00:00.250Z"])
def test_rfc3339_timestamps_are_accepted(api, moment):
    # given a correct RFC 3339 time, with an offset or Z and optional fraction
    # when an event is sent
    response = api.post("/events", {**EVENT, "occurred_at": moment})
    # then it is stored at that instant
    assert response.status_code == 201


@pytest.mark.parametrize("amount", ["100", True, 100.0, "1e3", None])
def test_purchase_amount_must_be_an_integer(api, amount):
    # given an amount that is not a JSON integer (true was stored as 1)
    # when the purchase is sent
    response = api.post("/purchases", {**PURCHASE, "amount": amount})
    # then refused on amount, nothing stored
    assert response.status_code == 422
    assert "amount" in messages_of(response)
    assert not Purchase.objects.exists()


@pytest.mark.parametrize("prefecture", ["99", "00", "0", "48", "東京都", "13 ", 13])
def test_prefecture_must_be_a_jis_code(api, prefecture):
    # given a prefecture that is not one of the 47 JIS X 0401 codes
    # when a customer is sent
    response = api.put("/customers/EXT-PREF", {**NEW, "prefecture": prefecture})
    # then refused on prefecture, nothing stored
    assert response.status_code == 422
    assert "prefecture" in messages_of(response)
    assert not Customer.objects.filter(external_id="EXT-PREF").exists()


@pytest.mark.parametrize("prefecture", ["01", "13", "47", ""])
def test_jis_prefecture_codes_are_accepted(api, prefecture):
    # when a customer is sent with a JIS code (or none)
    response = api.put("/customers/EXT-PREF", {**NEW, "prefecture": prefecture})
    # then it is stored with it
    assert response.status_code == 201
    assert Customer.objects.get(external_id="EXT-PREF").prefecture == prefecture


@pytest.mark.parametrize(
    "birth_date", ["2000-01-01T00:00:00", "2000-01-01T00:00:00+09:00", 946684800, "20000101"]
)
def test_birth_date_must_be_a_date(api, birth_date):
    # given a birth date sent as a timestamp or a Unix time
    # when the customer is sent
    response = api.put("/customers/EXT-BD", {**NEW, "birth_date": birth_date})
    # then refused on birth_date, nothing stored
    assert response.status_code == 422
    assert "birth_date" in messages_of(response)
    assert not Customer.objects.filter(external_id="EXT-BD").exists()


@pytest.mark.parametrize("accepted", ["true", 1, 0, "yes"])
def test_cookie_choice_must_be_a_boolean(publishable_client, accepted):
    # given a cookie category answered with something other than true/false
    _client, key = publishable_client
    body = {"visitor_id": "visitor-0003", "categories": {"cookies_analytics": accepted}}
    # when the banner's request is sent
    response = Client().post(
        f"/api/v1/cookie-consents?key={key}",
        body,
        content_type="application/json",
        headers={"Origin": ORIGIN},
    )
    # then refused, nothing recorded
    assert response.status_code == 422
    assert not ConsentEvent.objects.exists()


@pytest.mark.parametrize("prefix", [b"\xef\xbb\xbf", "\ufeff".encode("utf-16")[:2]])
def test_json_with_a_byte_order_mark_is_refused(api, prefix):
    # given a JSON body preceded by a byte order mark (UTF-8's, or UTF-16's)
    body = prefix + json.dumps(EVENT).encode()
    # when sent
    response = api.post("/events", body)
    # then refused as a body that is not JSON (RFC 8259 §8.1), nothing stored
    assert _is_api_error(response, 400)
    assert not CustomerEvent.objects.exists()


def test_json_in_utf16_is_refused(api):
    # given a JSON body encoded as UTF-16 (json.loads would detect and accept it)
    body = json.dumps(EVENT).encode("utf-16-le")
    # when sent
    response = api.post("/events", body)
    # then refused, nothing stored
    assert _is_api_error(response, 400)
    assert not CustomerEvent.objects.exists()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_numbers_are_refused_on_their_field(api, constant):
    # given bodies using Python's JSON extensions NaN / Infinity (not JSON, RFC 8259 section 6)
    event = json.dumps(EVENT)[:-1] + f', "properties": {{"score": {constant}}}}}'
    purchase = json.dumps(PURCHASE).replace("5400", constant)
    # when sent
    answers = [api.post("/events", event), api.post("/purchases", purchase)]
    # then each is refused on the field that holds it, nothing stored
    assert [a.status_code for a in answers] == [422, 422]
    assert [list(messages_of(a)) for a in answers] == [["properties"], ["amount"]]
    assert not CustomerEvent.objects.exists() and not Purchase.objects.exists()


# --- size and error shape ---------------------------------------------------------------------------


def test_a_body_over_the_size_limit_is_413_in_json(api, settings):
    # given an upload limit of 1 KB and a 2 KB body
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = {**EVENT, "properties": {"pad": "x" * 2048}}
    # when sent
    response = api.post("/events", body)
    # then 413 in the API's JSON shape (not Django's HTML 400 page), nothing stored
    assert _is_api_error(response, 413)
    assert not CustomerEvent.objects.exists()


def test_every_api_error_is_json(api):
    # given requests to a path the API does not have, and with a method an endpoint does not take
    # when sent
    unknown = api.get("/no-such-endpoint")
    wrong_method = api.http.delete("/api/v1/events", headers={"Authorization": f"Bearer {api.token}"})
    # then both answer in the API's JSON error shape
    assert _is_api_error(unknown, 404)
    assert _is_api_error(wrong_method, 405)
    assert "POST" in wrong_method["Allow"]


def test_an_unexpected_failure_is_a_json_500_logged_by_route(api, monkeypatch, caplog):
    # given a service that fails in a way nobody handled
    from crm import services

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "customer_create", broken)
    http = Client(raise_request_exception=False)
    # when a client writes a customer
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = http.put(
            "/api/v1/customers/EXT-SECRET-500",
            json.dumps(NEW),
            content_type="application/json",
            headers={"Authorization": f"Bearer {api.token}"},
        )
    # then a 500 in the API's JSON shape (no HTML page, no traceback), logged with the traceback under the
    # route's name, never the external id
    assert _is_api_error(response, 500)
    assert "boom" not in response.content.decode()
    records = [r for r in caplog.records if r.name == "django.request"]
    assert [r.getMessage() for r in records] == ["Internal Server Error: api_v1:customer_upsert"]
    assert records[0].exc_info is not None


# --- request log ------------------------------------------------------------------------------------


def test_request_log_names_the_route_not_the_path(api, team, caplog):
    # given a customer whose external id would identify the person in a log line
    CustomerFactory(team=team, external_id="EXT-SECRET-4711")
    # when a refused request is made on its path
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = api.put("/customers/EXT-SECRET-4711", {"shoe_size": 27})
    # then Django's request log says which route answered 4xx, without the external id
    assert response.status_code == 422
    lines = [r.getMessage() for r in caplog.records if r.name == "django.request"]
    assert lines, "the 4xx was logged"
    assert all("EXT-SECRET-4711" not in line for line in lines)
    assert any("customer_upsert" in line for line in lines)
