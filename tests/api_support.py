"""Fixtures and helpers of the integration API tests (imported by tests/*/test_api*.py).

Kept out of the conftest files, which other areas own: import the fixtures you use by name.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from crm.integrations import services as integration_services
from crm.integrations.models import ApiScope
from crm.integrations.ratelimit import _redis

SERVER_SCOPES = [
    ApiScope.CUSTOMERS_WRITE,
    ApiScope.CONSENTS_WRITE,
    ApiScope.CONSENTS_READ,
    ApiScope.EVENTS_WRITE,
    ApiScope.REQUESTS_WRITE,
]
ORIGIN = "https://www.example.co.jp"


class Api:
    """A test client that speaks JSON to /api/v1/ with a bearer token."""

    def __init__(self, token: str | None) -> None:
        self.http = Client()
        self.token = token

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        data = json.dumps(body) if body is not None and not isinstance(body, str | bytes) else body
        return getattr(self.http, method.lower())(
            f"/api/v1{path}",
            data=data if data is not None else ({} if method == "GET" else b""),
            content_type="application/json",
            headers=self._headers(headers),
        )

    def post(self, path: str, body: Any = None, **headers: str) -> Any:
        return self.call("POST", path, body, **headers)

    def put(self, path: str, body: Any = None, **headers: str) -> Any:
        return self.call("PUT", path, body, **headers)

    def get(self, path: str, **headers: str) -> Any:
        return self.http.get(f"/api/v1{path}", headers=self._headers(headers))


@pytest.fixture(autouse=False)
def clean_rate_limits() -> None:
    """Counters live in Redis, outside the test transaction: start each test that counts with none."""
    for key in _redis().scan_iter("crm:api:rl:*"):
        _redis().delete(key)


@pytest.fixture
def frozen_window(monkeypatch) -> float:
    """Pin the limiter's clock to the middle of a one-minute window, so a test never straddles two."""
    import time
    import types

    from crm.integrations import ratelimit

    now = (int(time.time()) // 60) * 60 + 30.0
    monkeypatch.setattr(ratelimit, "time", types.SimpleNamespace(time=lambda: now))
    return now


@pytest.fixture
def api_client_record(team, clean_rate_limits):
    """A server-side client of `team` with every server scope, and its token."""
    return integration_services.api_client_create(name="corporate-site", team=team, scopes=SERVER_SCOPES)


@pytest.fixture
def api(api_client_record) -> Api:
    return Api(api_client_record[1])


@pytest.fixture
def publishable_client(team, clean_rate_limits):
    """A publishable cookie-banner key allowed from ORIGIN."""
    return integration_services.api_client_create(
        name="cookie-banner", team=team, scopes=[ApiScope.COOKIES_WRITE], allowed_origins=[ORIGIN]
    )


def messages_of(response: Any) -> dict[str, str]:
    """{field: message} of a 422 answer (last element of loc)."""
    return {str(e["loc"][-1]): e["msg"] for e in response.json()["detail"]}
