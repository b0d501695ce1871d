"""Property-based fuzzing of the integration API from its own OpenAPI document (schemathesis, in-process).

For every operation schemathesis generates valid and invalid requests from /api/v1/openapi.json. Properties:
- never a 5xx, and every answer is a documented status with a body matching its documented schema;
- a refused request (4xx) changes nothing: no customer, event, purchase, consent, idempotency record or audit
  entry appears;
- every audit entry an accepted request writes names the API client's service user as actor.
Bounded (FUZZ_EXAMPLES per operation) so the whole test stays well under a minute. Not derandomised: each run
explores new inputs, and Hypothesis keeps what failed in its example database under .hypothesis/ (kept
between runs, not committed) and replays it first on the next run. The bodies of the outside probe of issue
#13 are replayed on every run as explicit cases (test_probe_regressions_are_refused_without_writes).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from consent.models import ConsentEvent, ConsentState, VisitorLink
from crm.integrations import services as integration_services
from crm.integrations.models import ApiScope, IdempotencyRecord
from crm.models import AuditEntry, Customer, CustomerEvent, Purchase
from tests.api_support import ORIGIN, SERVER_SCOPES
from tests.factories import CustomerFactory

FUZZ_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "15"))
# Failing examples found by earlier runs are replayed first (the directory is in .gitignore).
EXAMPLE_DATABASE = DirectoryBasedExampleDatabase(
    Path(__file__).resolve().parents[2] / ".hypothesis" / "api-fuzz"
)

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
schema.config.generation.update(modes=["positive", "negative"], max_examples=FUZZ_EXAMPLES)
# The coverage phase (boundary values of every keyword) alone sends hundreds of requests per operation; the
# examples and fuzzing phases keep the run bounded. API_FUZZ_COVERAGE=1 turns it on for a deeper local run.
schema.config.phases.coverage.enabled = os.environ.get("API_FUZZ_COVERAGE") == "1"

WATCHED = (
    Customer,
    CustomerEvent,
    Purchase,
    ConsentEvent,
    ConsentState,
    VisitorLink,
    IdempotencyRecord,
    AuditEntry,
)


def _counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in WATCHED}


@pytest.fixture
def fuzz_clients(team, clean_rate_limits, settings):
    """A server client with every scope (and no practical rate limit), a publishable key, and a customer the
    generated requests can hit by external id."""
    server, token = integration_services.api_client_create(
        name="fuzz",
        team=team,
        scopes=[*SERVER_SCOPES, ApiScope.INCIDENTS_WRITE],
        rate_limit_per_minute=1_000_000,
    )
    publishable, key = integration_services.api_client_create(
        name="fuzz-banner",
        team=team,
        scopes=[ApiScope.COOKIES_WRITE],
        allowed_origins=[ORIGIN],
        rate_limit_per_minute=1_000_000,
    )
    CustomerFactory(team=team, external_id="0")
    CustomerFactory(team=team, external_id="C-1001")  # the one the OpenAPI examples name
    settings.API_PUBLIC_RATE_LIMIT_PER_ADDRESS = 1_000_000
    return server, token, publishable, key


@pytest.fixture
def in_process_requests():
    """Keep the test's transaction open across WSGI calls, as Django's own test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _send_and_check(case, fuzz_clients):
    """Send `case` with a valid credential; check the answer is documented and a refusal wrote nothing."""
    server, token, publishable, key = fuzz_clients
    cookie_endpoint = case.path.startswith("/api/v1/cookie-consents")
    headers = {"Origin": ORIGIN} if cookie_endpoint else {"Authorization": f"Bearer {token}"}
    params = {"key": key} if cookie_endpoint else None
    before = _counts()
    last_audit = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    # when it is sent
    response = case.call(headers=headers, params=params)
    # then no 5xx, and the answer is documented
    case.validate_response(response, checks=CHECKS, headers=headers)
    after = _counts()
    if response.status_code >= 400:
        # and a refused request wrote nothing at all
        assert after == before, (
            f"{case.method} {case.path} → {response.status_code} changed {before} → {after}"
        )
    else:
        # and whatever was written is attributed to the client
        acting = publishable if cookie_endpoint else server
        actors = set(AuditEntry.objects.filter(pk__gt=last_audit).values_list("actor_id", flat=True))
        assert actors <= {acting.user_id}
    return response


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    # Explicit: with CI set, Hypothesis's "ci" profile would derandomise, which implies no database.
    derandomize=False,
    database=EXAMPLE_DATABASE,
)
@pytest.mark.django_db
def test_api_survives_fuzzing_without_unintended_writes(case, fuzz_clients, in_process_requests):
    # given a request generated from the API's own OpenAPI document, sent with a valid credential
    # when it is sent, then the answer is documented, never a 5xx, and a refusal changed nothing
    _send_and_check(case, fuzz_clients)


def _nested(depth: int) -> dict:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value  # type: ignore[return-value]


EVENT = {"kind": "page_view", "occurred_at": "2026-04-01T10:00:00+09:00", "visitor_id": "v-123456789"}
PURCHASE = {"order_no": "P-1", "amount": 1, "channel": "web_form", "purchased_at": "2026-04-01T10:00:00Z"}
CUSTOMER = {"family_name": "佐藤", "collection_channel": "web_form"}
CONSENT = {"purpose_code": "marketing_email", "action": "grant", "visitor_id": "visitor-0001"}
EVENT_JSON = '{"kind": "page_view", "occurred_at": "2026-04-01T10:00:00+09:00", "visitor_id": "v-123456789"}'

# The outside probe's findings (issue #13): (id, method, path, body, Content-Type, expected status). A str
# or bytes body is sent as it is; a dict as JSON.
PROBE = [
    ("properties-500-deep", "POST", "/events", {**EVENT, "properties": _nested(500)}, None, 422),
    (
        "properties-950-deep",
        "POST",
        "/events",
        EVENT_JSON[:-1] + ', "properties": {"a":' + "[" * 950 + "]" * 950 + "}}",
        None,
        422,
    ),
    (
        "preferences-600-deep",
        "PUT",
        "/customers/{external_id}",
        {**CUSTOMER, "preferences": _nested(600)},
        None,
        422,
    ),
    ("occurred_at-unix", "POST", "/events", {**EVENT, "occurred_at": 1733000000}, None, 422),
    ("occurred_at-minus-one", "POST", "/events", {**EVENT, "occurred_at": -1}, None, 422),
    ("consent-occurred_at-unix", "POST", "/consents", {**CONSENT, "occurred_at": 1733000000}, None, 422),
    ("amount-text", "POST", "/purchases", {**PURCHASE, "amount": "100"}, None, 422),
    ("amount-true", "POST", "/purchases", {**PURCHASE, "amount": True}, None, 422),
    ("prefecture-99", "PUT", "/customers/{external_id}", {**CUSTOMER, "prefecture": "99"}, None, 422),
    (
        "birth_date-datetime",
        "PUT",
        "/customers/{external_id}",
        {**CUSTOMER, "birth_date": "2000-01-01T00:00:00"},
        None,
        422,
    ),
    (
        "cookie-choice-text",
        "POST",
        "/cookie-consents",
        {"visitor_id": "visitor-0001", "categories": {"cookies_analytics": "true"}},
        None,
        422,
    ),
    ("json-with-bom", "POST", "/events", b"\xef\xbb\xbf" + EVENT_JSON.encode(), None, 400),
    ("text-plain", "POST", "/events", EVENT_JSON, "text/plain", 415),
    ("form", "POST", "/events", EVENT_JSON, "application/x-www-form-urlencoded", 415),
    ("multipart", "POST", "/events", EVENT_JSON, "multipart/form-data; boundary=x", 415),
    ("xml", "POST", "/events", EVENT_JSON, "application/xml", 415),
    ("image", "PUT", "/customers/{external_id}", EVENT_JSON, "image/png", 415),
    (
        "cookie-text-plain",
        "POST",
        "/cookie-consents",
        '{"visitor_id": "visitor-0001", "categories": {}}',
        "text/plain",
        415,
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status"), [p[1:] for p in PROBE], ids=[p[0] for p in PROBE]
)
@pytest.mark.django_db
def test_probe_regressions_are_refused_without_writes(
    method, path, body, content_type, status, fuzz_clients, in_process_requests
):
    # given one of the probe's bodies as an explicit case of the operation it attacked
    operation = schema[f"/api/v1{path}"][method]
    extra = {"path_parameters": {"external_id": "PROBE-1"}} if "{external_id}" in path else {}
    if content_type:
        # Sent as text, labelled with the probe's Content-Type.
        case = operation.Case(
            body=body, media_type="text/plain", headers={"Content-Type": content_type}, **extra
        )
    else:
        case = operation.Case(body=body, media_type="application/json", **extra)
    # when it is sent, then it is refused as the probe's finding says, documented, and nothing is written
    response = _send_and_check(case, fuzz_clients)
    assert response.status_code == status
