"""Integration API: POST /requests (開示等請求, the requests:write scope)."""

from __future__ import annotations

import datetime as dt

import pytest

from consent.requests.models import DataSubjectRequest, RequestState
from crm.integrations import services as integration_services
from crm.integrations.models import ApiScope
from crm.permissions import ROLE_SUPPORT, ROLE_SUPPORT_LEAD
from tests.api_support import Api
from tests.factories import CustomerFactory, UserFactory

pytestmark = pytest.mark.django_db

BODY = {
    "kind": "disclosure",
    "jurisdiction": "both",
    "received_at": "2026-01-31T22:30:00+09:00",
    "disclosure_method": "electronic",
    "requester": {"name": "山田 太郎", "email": "taro@example.com"},
}


def test_a_request_enters_the_queue_with_its_clocks(api, team):
    # given a client with requests:write, and a customer of its team
    CustomerFactory(team=team, external_id="M-1")
    # when it posts a request naming the customer
    answer = api.post("/requests", {**BODY, "external_id": "M-1"})
    # then the request is received, linked, unassigned, with APPI and GDPR dates computed in JST
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert (body["state"], body["appi_due"], body["gdpr_due"], body["due_on"]) == (
        "received",
        "2026-02-14",
        "2026-02-28",
        "2026-02-14",
    )
    request = DataSubjectRequest.objects.get(pk=body["id"])
    assert (request.channel, request.handler_id, request.customer.external_id) == ("api", None, "M-1")
    # and support leads see it in their queue; a handler of the desk does not until it is assigned
    lead = UserFactory(username="lead", roles=[ROLE_SUPPORT_LEAD])
    agent = UserFactory(username="agent", roles=[ROLE_SUPPORT])
    assert DataSubjectRequest.objects.restrict(lead).open().filter(pk=request.pk).exists()
    assert not DataSubjectRequest.objects.restrict(agent).exists()


def test_a_customer_of_another_team_is_not_found(api, other_team):
    CustomerFactory(team=other_team, external_id="O-1")
    answer = api.post("/requests", {**BODY, "external_id": "O-1"})
    assert answer.status_code == 404
    assert DataSubjectRequest.objects.count() == 0


def test_without_the_scope_the_client_is_refused(team, clean_rate_limits):
    _client, token = integration_services.api_client_create(
        name="no-requests", team=team, scopes=[ApiScope.CONSENTS_WRITE]
    )
    assert Api(token).post("/requests", BODY).status_code == 403
    assert DataSubjectRequest.objects.count() == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "everything"}, "kind"),
        ({"received_at": "2026-01-31T22:30:00"}, "received_at"),
        ({"requester": {"email": "not-an-address"}}, "requester_email"),
        ({"requester": {"email": "a@example.com", "extra": 1}}, "extra"),
        ({"details": "x" * 4001}, "details"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_a_bad_body_is_422_in_the_apis_error_shape(api, change, field):
    answer = api.post("/requests", {**BODY, **change})
    assert answer.status_code == 422, answer.content
    assert isinstance(answer.json()["detail"], list)
    assert DataSubjectRequest.objects.count() == 0


def test_the_same_idempotency_key_makes_one_request(api):
    first = api.post("/requests", BODY, **{"Idempotency-Key": "req-1"})
    again = api.post("/requests", BODY, **{"Idempotency-Key": "req-1"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["id"] == again.json()["id"]
    assert DataSubjectRequest.objects.filter(state=RequestState.RECEIVED).count() == 1
    assert dt.date.fromisoformat(first.json()["gdpr_due"]) == dt.date(2026, 2, 28)
