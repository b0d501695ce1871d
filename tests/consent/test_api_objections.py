"""Integration API: objections (GDPR Art. 21) and the lawful basis shown with the consent state (#17)."""

from __future__ import annotations

import pytest

from consent.models import Objection
from consent.selectors import usable_for
from crm.integrations import services as integration_services
from crm.integrations.models import ApiScope
from crm.models import Customer
from tests.api_support import Api, messages_of
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(team):
    return CustomerFactory(team=team, external_id="M-1")


def test_an_objection_to_direct_marketing_is_recorded_and_honoured(api, api_client_record, member):
    # given a customer of the client's team who consented to marketing e-mail
    api.post(
        "/consents",
        {"purpose_code": "marketing_email", "action": "grant", "method": "opt_in", "external_id": "M-1"},
    )
    assert usable_for(Customer.objects.all(), "marketing_email").exists()
    # when the website records their objection to direct marketing
    response = api.post("/objections", {"external_id": "M-1", "scope": "direct_marketing"})
    # then it is on the ledger, attributed to the client, and the customer is no longer selected
    assert response.status_code == 201, response.content
    objection = Objection.objects.get(pk=response.json()["id"])
    assert objection.api_client_id == api_client_record[0].pk and objection.source == "api"
    assert not usable_for(Customer.objects.all(), "marketing_email").exists()


def test_an_objection_to_a_consent_purpose_is_422_with_the_way_that_applies(api, member):
    # when the client objects to a consent-based purpose
    response = api.post(
        "/objections", {"external_id": "M-1", "scope": "purpose", "purpose_code": "marketing_email"}
    )
    # then it is told to withdraw the consent instead, and nothing is written
    assert response.status_code == 422
    assert "撤回" in messages_of(response)["purpose_code"]
    assert not Objection.objects.exists()


def test_an_unknown_scope_or_field_is_422(api, member):
    assert api.post("/objections", {"external_id": "M-1", "scope": "everything"}).status_code == 422
    body = {"external_id": "M-1", "scope": "direct_marketing", "extra": 1}
    assert api.post("/objections", body).status_code == 422
    assert not Objection.objects.exists()


def test_objecting_needs_consents_write(team, member, clean_rate_limits):
    # given a client that may only read consents
    _client, token = integration_services.api_client_create(
        name="reader", team=team, scopes=[ApiScope.CONSENTS_READ]
    )
    # then it is refused and nothing is written
    response = Api(token).post("/objections", {"external_id": "M-1", "scope": "direct_marketing"})
    assert response.status_code == 403
    assert not Objection.objects.exists()


def test_the_consent_state_shows_basis_objection_and_rights(api, member):
    # given an objection to analytics (legitimate interest)
    api.post("/objections", {"external_id": "M-1", "scope": "purpose", "purpose_code": "analytics"})
    # when the state is read
    basis = api.get("/customers/M-1/consents").json()["basis"]
    # then each purpose says its basis with the article and what the person can do
    assert basis["analytics"]["legal_basis"] == "legitimate_interest"
    assert basis["analytics"]["objected"] is True
    assert [r["code"] for r in basis["analytics"]["rights"]] == ["object", "stop_use"]
    assert basis["marketing_email"]["article"].startswith("GDPR 6(1)(a)")
    assert [r["code"] for r in basis["marketing_email"]["rights"]] == [
        "withdraw_consent",
        "object_direct_marketing",
        "stop_use",
    ]
    assert basis["marketing_email"]["objected"] is False
    assert basis["customer_management"]["rights"] == [{"code": "stop_use", "article": "APPI 35"}]
