"""Integration API: consent events, consent state, visitor linking and the cookie-banner endpoints."""

from __future__ import annotations

import pytest
from django.test import Client

from consent.models import ConsentEvent
from crm import services
from crm.integrations import services as integration_services
from crm.integrations.models import ApiScope
from crm.models import AuditEntry, TeamMembership
from tests.api_support import ORIGIN, Api, messages_of
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

GRANT = {"purpose_code": "marketing_email", "action": "grant", "method": "opt_in", "channel": "web_form"}


@pytest.fixture
def member(team):
    return CustomerFactory(team=team, external_id="M-1")


# --- consent events -------------------------------------------------------------------------------


def test_consent_is_recorded_for_the_clients_customer(api, api_client_record, member):
    # given a customer of the client's team
    client, _token = api_client_record
    # when the website records an opt-in with the form and the address it came from
    response = api.post(
        "/consents",
        {**GRANT, "external_id": "M-1", "evidence": {"form_id": "signup", "source_ip": "203.0.113.5"}},
    )
    # then one ledger row exists, attributed to the client, and the answer carries no personal value
    assert response.status_code == 201
    body = response.json()
    assert body["purpose_code"] == "marketing_email" and body["action"] == "grant"
    event = ConsentEvent.objects.get(pk=body["id"])
    assert event.customer == member
    assert event.api_client_id == client.pk
    assert event.operator is None  # an API client is not a staff operator
    assert event.form_id == "signup"
    # and the write is audited with the client's service user as actor
    assert AuditEntry.objects.filter(
        actor=client.user, content_type__model="consentevent", object_pk=str(event.pk)
    ).exists()


def test_removing_the_clients_team_membership_refuses_its_next_write(api, api_client_record, team, member):
    # given a client that records consents for its team's customer
    client, _token = api_client_record
    assert api.post("/consents", {**GRANT, "external_id": "M-1"}).status_code == 201

    # when its service user leaves the team (team ids are read with the token on every call, never cached)
    membership = TeamMembership.objects.get(team=team, user=client.user)
    services.team_member_remove(membership=membership)

    # then the very next write finds no customer it may change, and nothing more is written
    before = ConsentEvent.objects.count()
    assert api.post("/consents", {**GRANT, "external_id": "M-1"}).status_code == 404
    assert ConsentEvent.objects.count() == before


def test_consent_state_is_read_back(api, member):
    # given a grant then a withdrawal
    api.post("/consents", {**GRANT, "external_id": "M-1", "occurred_at": "2026-04-01T10:00:00+09:00"})
    api.post(
        "/consents",
        {
            **GRANT,
            "action": "withdraw",
            "method": "opt_out",
            "external_id": "M-1",
            "occurred_at": "2026-04-02T10:00:00+09:00",
        },
    )
    # when the state is read
    response = api.get("/customers/M-1/consents")
    # then the latest answer wins
    assert response.status_code == 200
    state = response.json()["purposes"]["marketing_email"]
    assert state["granted"] is False
    assert state["at"].startswith("2026-04-02T01:00:00")  # 10:00 JST in UTC


def test_consent_for_another_teams_customer_is_404(api, other_team):
    # given a customer of another team (refused case)
    CustomerFactory(team=other_team, external_id="F-1")
    # when the client records a consent for it or reads its state
    write = api.post("/consents", {**GRANT, "external_id": "F-1"})
    read = api.get("/customers/F-1/consents")
    # then both are refused as not found and nothing is written
    assert write.status_code == 404 and read.status_code == 404
    assert not ConsentEvent.objects.exists()


@pytest.mark.parametrize(
    "change",
    [
        {"purpose_code": "no_such_purpose"},
        {"action": "maybe"},
        {"evidence": {"text_hash": "abc"}},
        {"evidence": {"source_ip": "999.1.1.1"}},
        {"evidence": {"operator_id": 1}},  # not accepted from an API client
        {"occurred_at": "2099-01-01T00:00:00+09:00"},
        {"external_id": None, "visitor_id": None},
    ],
)
def test_bad_consents_are_422_and_write_nothing(api, member, change):
    # given a consent with one problem
    body = {**GRANT, "external_id": "M-1", **change}
    # when sent
    response = api.post("/consents", body)
    # then 422 with a Japanese message, nothing in the ledger
    assert response.status_code == 422, response.content
    assert all(e["msg"] for e in response.json()["detail"])
    assert not ConsentEvent.objects.exists()


def test_consent_retry_with_idempotency_key_is_one_ledger_row(api, member):
    # given a consent posted with a key
    headers = {"Idempotency-Key": "consent-1"}
    first = api.post("/consents", {**GRANT, "external_id": "M-1"}, **headers)
    # when retried
    second = api.post("/consents", {**GRANT, "external_id": "M-1"}, **headers)
    # then same answer, one ledger row
    assert first.json() == second.json()
    assert ConsentEvent.objects.count() == 1


def test_consent_key_with_another_body_is_refused_and_writes_nothing(api, member):
    # given a grant posted with a key
    headers = {"Idempotency-Key": "consent-2"}
    first = api.post("/consents", {**GRANT, "external_id": "M-1"}, **headers)
    assert first.status_code == 201
    # when the same key comes back with a withdrawal
    second = api.post("/consents", {**GRANT, "action": "withdraw", "external_id": "M-1"}, **headers)
    # then it is refused, and the ledger holds only the grant
    assert second.status_code == 422
    assert list(ConsentEvent.objects.values_list("action", flat=True)) == ["grant"]


def test_an_expired_key_records_the_consent_again(api, member):
    # given a consent whose stored answer has expired
    from crm.integrations.models import IdempotencyRecord

    headers = {"Idempotency-Key": "consent-3"}
    first = api.post("/consents", {**GRANT, "external_id": "M-1"}, **headers)
    IdempotencyRecord.objects.filter(key="consent-3").update(expires_at="2000-01-01T00:00:00Z")
    # when the same request comes again
    second = api.post("/consents", {**GRANT, "external_id": "M-1"}, **headers)
    # then it is a new write with a new answer, stored in place of the old one
    assert second.status_code == 201 and "Idempotent-Replayed" not in second
    assert second.json()["id"] != first.json()["id"]
    assert ConsentEvent.objects.count() == 2
    assert IdempotencyRecord.objects.filter(key="consent-3").count() == 1


def test_consent_needs_consents_write_scope(team, member, clean_rate_limits):
    # given a client that may only read consents
    _client, token = integration_services.api_client_create(
        name="reader", team=team, scopes=[ApiScope.CONSENTS_READ]
    )
    reader = Api(token)
    # when it writes / reads
    # then writing is 403 and reading is allowed
    assert reader.post("/consents", {**GRANT, "external_id": "M-1"}).status_code == 403
    assert reader.get("/customers/M-1/consents").status_code == 200
    assert not ConsentEvent.objects.exists()


def test_visitor_consent_follows_the_visitor_to_the_customer(api, member):
    # given an anonymous visitor who accepted analytics cookies
    api.post(
        "/consents",
        {
            "purpose_code": "cookies_analytics",
            "action": "grant",
            "channel": "cookie_banner",
            "visitor_id": "visitor-0001",
        },
    )
    assert api.get("/visitors/visitor-0001/consents").json()["purposes"]["cookies_analytics"]["granted"]
    # when the visitor logs in and is linked to the customer
    link = api.post("/visitors/visitor-0001/link", {"external_id": "M-1"})
    # then the consent is carried over to the customer's state
    assert link.status_code == 200 and link.json() == {"copied": 1}
    assert api.get("/customers/M-1/consents").json()["purposes"]["cookies_analytics"]["granted"] is True


# --- cookie banner (publishable key) -----------------------------------------------------------------


def _banner(key: str, body: object, origin: str | None = ORIGIN, method: str = "post") -> object:
    headers = {"Origin": origin} if origin else {}
    http = Client()
    if method == "options":
        return http.options(f"/api/v1/cookie-consents?key={key}", headers=headers)
    return http.post(
        f"/api/v1/cookie-consents?key={key}",
        data=body,
        content_type="application/json",
        headers={**headers, "User-Agent": "Mozilla/5.0 test"},
    )


def test_cookie_banner_records_categories_for_the_visitor(publishable_client):
    # given a publishable key allowed from the company site
    client, key = publishable_client
    # when the banner sends the visitor's choice
    response = _banner(
        key,
        {
            "visitor_id": "visitor-0002",
            "categories": {"cookies_analytics": True, "cookies_advertising": False},
        },
    )
    # then one ledger row per category, from the cookie banner, with CORS for that origin only
    assert response.status_code == 201, response.content
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    rows = ConsentEvent.objects.filter(visitor_id="visitor-0002")
    assert {(r.purpose.code, r.action) for r in rows} == {
        ("cookies_analytics", "grant"),
        ("cookies_advertising", "withdraw"),
    }
    assert all(r.channel == "cookie_banner" and r.api_client_id == client.pk for r in rows)
    assert rows.first().user_agent == "Mozilla/5.0 test"


def test_cookie_endpoint_refuses_anything_but_cookie_categories(publishable_client):
    # given the public key, which anyone can copy from the page
    _client, key = publishable_client
    # when it is used to grant marketing e-mail consent
    response = _banner(key, {"visitor_id": "visitor-0003", "categories": {"marketing_email": True}})
    # then refused as a whole, nothing written
    assert response.status_code == 422
    assert "marketing_email" in messages_of(response)["categories"]
    assert not ConsentEvent.objects.exists()


def test_cookie_endpoint_refuses_other_origins_and_missing_keys(publishable_client):
    # given the public key
    _client, key = publishable_client
    body = {"visitor_id": "visitor-0004", "categories": {"cookies_analytics": True}}
    # when used from another site, without Origin (not a browser page), or with no key
    # then each is refused and nothing is written
    assert _banner(key, body, origin="https://evil.example").status_code == 403
    assert _banner(key, body, origin=None).status_code == 403
    assert _banner("", body).status_code == 401
    assert not ConsentEvent.objects.exists()


def test_cookie_endpoint_refuses_server_tokens(api_client_record):
    # given a server token (it has no cookies:write scope)
    _client, token = api_client_record
    # when used as a cookie key
    response = _banner(token, {"visitor_id": "visitor-0005", "categories": {"cookies_analytics": True}})
    # then 403
    assert response.status_code == 403


def test_cors_preflight_only_for_allowed_origins(publishable_client):
    # given the public key
    _client, key = publishable_client
    # when the browser asks before POSTing, from the allowed and from another origin
    allowed = _banner(key, None, method="options")
    refused = _banner(key, None, origin="https://evil.example", method="options")
    # then only the allowed origin is answered with CORS headers
    assert allowed.status_code == 204
    assert allowed["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in allowed["Access-Control-Allow-Methods"]
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused


def test_banner_lists_the_published_cookie_categories(publishable_client):
    # given the public key
    _client, key = publishable_client
    # when the banner loads its categories
    response = Client().get(f"/api/v1/cookie-consents/categories?key={key}", headers={"Origin": ORIGIN})
    # then only cookie purposes are offered, each with the version and text hash it will be recorded against
    assert response.status_code == 200
    codes = {c["code"] for c in response.json()}
    assert codes == {"cookies_analytics", "cookies_advertising"}
    assert all(len(c["text_hash"]) == 64 for c in response.json())


def test_publishable_key_cannot_carry_other_scopes(team):
    # given an attempt to issue a public key that could also write customers
    # when issued
    # then refused
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        integration_services.api_client_create(
            name="bad", team=team, scopes=[ApiScope.COOKIES_WRITE, ApiScope.CUSTOMERS_WRITE]
        )


def test_banner_categories_follow_the_page_language(publishable_client):
    # given the public key
    _client, key = publishable_client
    # when an English page asks for the categories
    response = Client().get(
        f"/api/v1/cookie-consents/categories?key={key}&lang=en", headers={"Origin": ORIGIN}
    )
    # then the English wording is served (the Japanese one by default)
    titles = {c["code"]: c["title"] for c in response.json()}
    assert titles["cookies_analytics"].startswith("Cookies")


def test_banner_snippet_is_a_static_file_without_any_key():
    # given the snippet a website embeds
    from django.contrib.staticfiles import finders

    path = finders.find("consent/cookie-consent.js")
    # then it exists, posts to the cookie endpoint and carries no key of its own (the page supplies it)
    assert path is not None
    source = open(path, encoding="utf-8").read()
    assert "/cookie-consents" in source and "Idempotency-Key" in source
    assert "pk_" not in source.replace("pk_…", "")


def test_public_key_has_a_per_address_budget(publishable_client, settings, frozen_window):
    # given a public key and a budget of 2 calls a minute per address
    settings.API_PUBLIC_RATE_LIMIT_PER_ADDRESS = 2
    _client, key = publishable_client
    body = {"visitor_id": "visitor-0006", "categories": {"cookies_analytics": True}}

    def from_address(address):
        return Client(REMOTE_ADDR=address).post(
            f"/api/v1/cookie-consents?key={key}",
            data=body,
            content_type="application/json",
            headers={"Origin": ORIGIN},
        )

    # when one address calls three times, then another address calls
    codes = [from_address("198.51.100.7").status_code for _ in range(3)]
    other = from_address("198.51.100.8")
    # then the third call of the first address is refused, and the other address is not affected
    assert codes == [201, 201, 429]
    assert other.status_code == 201


def test_behind_a_proxy_the_per_address_budget_is_the_clients(publishable_client, settings, frozen_window):
    # given one trusted reverse proxy (every request arrives from its address) and a budget of 2 per address
    settings.TRUSTED_PROXY_HOPS = 1
    settings.API_PUBLIC_RATE_LIMIT_PER_ADDRESS = 2
    _client, key = publishable_client
    body = {"visitor_id": "visitor-0007", "categories": {"cookies_analytics": True}}

    def via_proxy(forwarded_for):
        return Client(REMOTE_ADDR="192.0.2.10", HTTP_X_FORWARDED_FOR=forwarded_for).post(
            f"/api/v1/cookie-consents?key={key}",
            data=body,
            content_type="application/json",
            headers={"Origin": ORIGIN},
        )

    # when one visitor calls three times, the third with a made-up address in front of its own
    codes = [via_proxy(f).status_code for f in ("203.0.113.1", "203.0.113.1", "198.51.100.9, 203.0.113.1")]
    # then that visitor is refused the third time, and another visitor behind the same proxy is not
    assert codes == [201, 201, 429]
    assert via_proxy("203.0.113.2").status_code == 201
