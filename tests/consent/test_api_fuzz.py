# ruff: noqa: F811  (pytest fixtures imported from tests.api_support are used as arguments)
"""Property-based fuzzing of the integration API from its own OpenAPI document (schemathesis, in-process).

For every operation schemathesis generates valid and invalid requests from /api/v1/openapi.json. Properties:
- never a 5xx, and every answer is a documented status with a body matching its documented schema;
- a refused request (4xx) changes nothing: no customer, event, purchase, consent, idempotency record or audit
  entry appears;
- every audit entry an accepted request writes names the API client's service user as actor.
Bounded (FUZZ_EXAMPLES per operation, derandomised) so the whole test stays well under a minute.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
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
from tests.api_support import ORIGIN, SERVER_SCOPES, clean_rate_limits  # noqa: F401
from tests.factories import CustomerFactory

FUZZ_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "15"))

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
        name="fuzz", team=team, scopes=SERVER_SCOPES, rate_limit_per_minute=1_000_000
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


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)
@pytest.mark.django_db
def test_api_survives_fuzzing_without_unintended_writes(case, fuzz_clients, in_process_requests):
    # given a request generated from the API's own OpenAPI document, sent with a valid credential
    server, token, publishable, key = fuzz_clients
    cookie_endpoint = case.path.startswith("/api/v1/cookie-consents")
    headers = {"Origin": ORIGIN} if cookie_endpoint else {"Authorization": f"Bearer {token}"}
    params = {"key": key} if cookie_endpoint else None
    before = _counts()
    last_audit = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    # when it is sent
    response = case.call(headers=headers, params=params)
    # then no 5xx, and the answer is documented
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        headers=headers,
    )
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
