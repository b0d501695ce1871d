# ruff: noqa: F811  (pytest fixtures imported from tests.api_support are used as arguments)
"""Idempotency under concurrency: two copies of one request arrive at the same time (a client retrying on a
timeout while the first attempt is still running). Real transactions on separate connections."""

from __future__ import annotations

import threading
import time

from django.db import connection

from crm import services
from crm.integrations import services as integration_services
from crm.integrations.models import ApiScope
from crm.models import Customer
from tests.api_support import Api, clean_rate_limits  # noqa: F401
from tests.marks import transactional_all_apps

# The requests run in threads with their own connections, so the data must be committed (and flushed after).
pytestmark = transactional_all_apps()

BODY = {"family_name": "佐藤", "collection_channel": "web_form", "email": "sato@example.jp"}


def test_simultaneous_retries_have_one_effect_and_one_answer(team, clean_rate_limits, monkeypatch):
    # given a client, and a create that takes a while (so the retry arrives while the first is running)
    _client, token = integration_services.api_client_create(
        name="site", team=team, scopes=[ApiScope.CUSTOMERS_WRITE]
    )
    original = services.customer_create

    def slow_create(**kwargs):
        time.sleep(0.5)
        return original(**kwargs)

    monkeypatch.setattr(services, "customer_create", slow_create)
    responses = []
    start = threading.Barrier(2)

    def send() -> None:
        try:
            start.wait(timeout=10)
            responses.append(Api(token).put("/customers/EXT-C", BODY, **{"Idempotency-Key": "same-key"}))
        finally:
            connection.close()

    # when the same request is sent twice at once
    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # then one customer exists, both callers got the same 201 answer, and one of them was a replay
    assert Customer.objects.filter(external_id="EXT-C").count() == 1
    assert [r.status_code for r in responses] == [201, 201]
    assert responses[0].json() == responses[1].json()
    assert sorted(r.get("Idempotent-Replayed", "") for r in responses) == ["", "true"]
