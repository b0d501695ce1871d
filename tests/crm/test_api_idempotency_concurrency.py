"""Idempotency under concurrency: two copies of one request arrive at the same time (a client retrying on a
timeout while the first attempt is still running). Real transactions on separate connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connection

from crm import services
from crm.integrations import services as integration_services
from crm.integrations.models import ApiScope
from crm.models import Customer
from tests.api_support import Api
from tests.marks import transactional_all_apps

# The requests run in threads with their own connections, so the data must be committed (and flushed after).
pytestmark = transactional_all_apps()

BODY = {"family_name": "佐藤", "collection_channel": "web_form", "email": "sato@example.jp"}


def _twice_at_once(send: Callable[[], Any]) -> list[Any]:
    """The responses of two threads calling `send` at the same moment, each on its own connection."""
    responses = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait(timeout=10)
            responses.append(send())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return responses


def _advisory_lock_waiters() -> int:
    """Backends waiting for an advisory lock (read by another connection than the waiting ones)."""
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return int(cur.fetchone()[0])


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _assert_one_answer_and_one_replay(responses: list[Any]) -> None:
    assert [r.status_code for r in responses] == [201, 201]
    assert responses[0].json() == responses[1].json()
    assert sorted(r.get("Idempotent-Replayed", "") for r in responses) == ["", "true"]


def test_simultaneous_retries_have_one_effect_and_one_answer(team, clean_rate_limits, monkeypatch):
    # given a client, and a create that goes on only once the retry is waiting for the first attempt (the
    # retry arrives while the first is running: it queues on the key's advisory lock)
    _client, token = integration_services.api_client_create(
        name="site", team=team, scopes=[ApiScope.CUSTOMERS_WRITE]
    )
    original = services.customer_create

    def slow_create(**kwargs):
        _wait_for(lambda: _advisory_lock_waiters() >= 1, "the retry to wait on the key's lock")
        return original(**kwargs)

    monkeypatch.setattr(services, "customer_create", slow_create)
    # when the same request is sent twice at once
    responses = _twice_at_once(
        lambda: Api(token).put("/customers/EXT-C", BODY, **{"Idempotency-Key": "same-key"})
    )
    # then one customer exists, both callers got the same 201 answer, and one of them was a replay
    assert Customer.objects.filter(external_id="EXT-C").count() == 1
    _assert_one_answer_and_one_replay(responses)


def test_simultaneous_consent_retries_write_one_row_and_replay_it(team, clean_rate_limits, monkeypatch):
    # given a client, a customer, and a lookup that takes a while, so that both copies find no stored
    # answer before either writes (the consent path has no lock: the key's unique constraint decides)
    from consent import selectors
    from consent import services as consent_services
    from consent.models import ConsentEvent
    from tests.factories import CustomerFactory

    consent_services.purpose_create(  # a transactional test starts without the seeded purposes
        code="newsletter_k",
        category="marketing_email",
        legal_basis="consent",
        title_ja="メールマガジン",
        title_en="Newsletter",
        description_ja="お知らせをメールで送るため。",
        description_en="To send news by e-mail.",
    )
    CustomerFactory(team=team, external_id="EXT-K")
    _client, token = integration_services.api_client_create(
        name="site", team=team, scopes=[ApiScope.CONSENTS_WRITE]
    )
    original = selectors.consent_subjects
    both_looked_up = threading.Barrier(2, timeout=10)

    def slow_subjects(**kwargs):
        found = original(**kwargs)
        both_looked_up.wait()  # neither writes before both have looked for a stored answer
        return found

    monkeypatch.setattr(selectors, "consent_subjects", slow_subjects)
    body = {"purpose_code": "newsletter_k", "action": "grant", "method": "opt_in", "external_id": "EXT-K"}
    # when the same consent is posted twice at once
    responses = _twice_at_once(
        lambda: Api(token).post("/consents", body, **{"Idempotency-Key": "same-consent"})
    )
    # then the ledger holds one row, both callers got its answer, and one of them was a replay
    assert [r.status_code for r in responses] == [201, 201], [r.content[:300] for r in responses]
    assert ConsentEvent.objects.filter(customer__external_id="EXT-K").count() == 1
    _assert_one_answer_and_one_replay(responses)
