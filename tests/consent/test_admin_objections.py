"""The admin of objections (GDPR Art. 21) and the purpose form's basis-change guard (issue #17)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from consent import services
from consent.models import Objection, Purpose
from consent.selectors import usable_for
from crm.models import Customer
from tests.consent.conftest import purpose_post

pytestmark = pytest.mark.django_db

ADD = "admin:consent_objection_add"


def _decide_url(objection: Objection) -> str:
    return reverse("admin:consent_objection_decide", args=[objection.pk])


def test_staff_record_an_objection_for_their_teams_customer(client, owner, customer):
    # given a team member
    client.force_login(owner)
    # when they record the customer's objection to analytics
    data = {"customer_id": customer.pk, "scope": "purpose", "purpose": "analytics"}
    response = client.post(reverse(ADD), data)
    # then it is on the ledger, attributed to them, and analytics no longer selects the customer
    assert response.status_code == 302, response.content.decode()[:2000]
    objection = Objection.objects.get()
    assert objection.operator == owner and objection.source == Objection.Source.ADMIN
    assert not usable_for(Customer.objects.all(), "analytics").exists()


def test_an_objection_for_another_teams_customer_is_refused(client, outsider, customer):
    client.force_login(outsider)
    response = client.post(reverse(ADD), {"customer_id": customer.pk, "scope": "direct_marketing"})
    assert response.status_code == 200
    assert "権限がないか" in response.content.decode()
    assert not Objection.objects.exists()


def test_an_objection_to_a_consent_purpose_shows_the_reason(client, owner, customer):
    client.force_login(owner)
    data = {"customer_id": customer.pk, "scope": "purpose", "purpose": "marketing_email"}
    response = client.post(reverse(ADD), data)
    assert response.status_code == 200
    assert "第7条3項" in response.content.decode()
    assert not Objection.objects.exists()


def test_only_the_privacy_officer_records_compelling_grounds(client, owner, privacy_officer, customer):
    # given an objection to analytics
    objection = services.objection_record(
        customer=customer, scope="purpose", purpose_code="analytics", source=Objection.Source.ADMIN
    )
    # when the team's owner opens the decision page, they are refused
    client.force_login(owner)
    assert client.post(_decide_url(objection), {"reason": "必要"}).status_code == 403
    # when the privacy officer records the grounds
    client.force_login(privacy_officer)
    response = client.post(_decide_url(objection), {"reason": "不正検知に不可欠なため"})
    # then the decision answers the objection and the customer is usable again
    assert response.status_code == 302
    assert Objection.objects.get(answers=objection).operator == privacy_officer
    assert usable_for(Customer.objects.all(), "analytics").exists()


def test_the_decision_page_refuses_a_direct_marketing_objection(client, privacy_officer, customer):
    objection = services.objection_record(
        customer=customer, scope="direct_marketing", source=Objection.Source.ADMIN
    )
    client.force_login(privacy_officer)
    response = client.post(_decide_url(objection), {"reason": "売上のため"})
    assert response.status_code == 200
    assert "第21条3項" in response.content.decode()
    assert Objection.objects.count() == 1


def test_the_purpose_form_asks_for_a_decision_before_leaving_consent(
    client, privacy_officer, customer, grant
):
    # given a consent to personalisation
    grant(customer, code="personalisation")
    purpose = Purpose.objects.get(code="personalisation")
    client.force_login(privacy_officer)
    url = reverse("admin:consent_purpose_change", args=[purpose.pk])
    # when the officer changes its basis to legitimate interest without a decision
    refused = client.post(url, purpose_post(purpose, legal_basis="legitimate_interest"))
    # then the form says why and nothing changes
    purpose.refresh_from_db()
    assert refused.status_code == 200
    assert "判断の記録" in refused.content.decode()
    assert purpose.legal_basis == "consent" and purpose.current_version.version == 1
    # when the decision is given, the change is made
    done = client.post(
        url, purpose_post(purpose, legal_basis="legitimate_interest", basis_change_reason="方針決定 P-12")
    )
    purpose.refresh_from_db()
    assert done.status_code == 302
    assert purpose.legal_basis == "legitimate_interest"
    assert purpose.current_version.basis_change_reason == "方針決定 P-12"


def test_the_customer_history_shows_objections_and_links_to_record_one(client, owner, outsider, customer):
    # given an objection to direct marketing
    services.objection_record(customer=customer, scope="direct_marketing", source=Objection.Source.ADMIN)
    url = reverse("admin:consent_customer_history", args=[customer.pk])
    # when the team's owner opens the customer's consent history
    client.force_login(owner)
    body = client.get(url).content.decode()
    # then the objection is listed with a link to record another
    assert "ダイレクトマーケティング全体" in body
    assert reverse(ADD) in body
    # and another team's user does not reach the page at all: sent back to the index, as for any record
    # they may not see (the change page's behaviour)
    client.force_login(outsider)
    refused = client.get(url)
    assert refused.status_code == 302
    assert refused.url == reverse("admin:index")
    assert "ダイレクトマーケティング全体" not in client.get(refused.url).content.decode()
