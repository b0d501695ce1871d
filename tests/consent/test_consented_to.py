"""consent.selectors.consented_to(customers, code): the consent-only question (proof of consent); selections
for use ask usable_for (tests/consent/test_usable_for.py)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from consent import services
from consent.models import Purpose
from consent.selectors import consented_to
from crm import services as crm_services
from crm.models import Customer
from tests.consent.conftest import at
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_only_customers_with_a_current_grant_are_selected(customer, teammate_customer, grant, withdraw):
    # given one customer who granted, one who granted then withdrew, one who never answered
    grant(customer, when=at("2026-04-01 10:00"))
    grant(teammate_customer, when=at("2026-04-01 10:00"))
    withdraw(teammate_customer, when=at("2026-04-02 10:00"))
    CustomerFactory(team=customer.team, member_no="M-CONSENT-3")
    # when the marketing audience is selected
    audience = consented_to(Customer.objects.all(), "marketing_email")
    # then only the first
    assert list(audience) == [customer]


def test_a_stop_use_customer_is_never_selected(customer, owner, grant):
    # given a customer who granted, then asked to stop use (APPI Art. 35)
    grant(customer, when=at("2026-04-01 10:00"))
    crm_services.customer_stop_use(customer=customer, actor=owner)
    # when the audience is selected
    # then the customer is not in it, although the ledger still says granted
    assert not consented_to(Customer.objects.all(), "marketing_email").exists()


def test_a_consent_for_one_purpose_does_not_select_for_another(customer, grant):
    # given a consent to personalisation only
    grant(customer, code="personalisation")
    # then the newsletter audience is empty
    assert not consented_to(Customer.objects.all(), "marketing_email").exists()
    assert consented_to(Customer.objects.all(), "personalisation").get() == customer


def test_composes_with_restrict_both_ways_round(customer, foreign_customer, owner, outsider, grant):
    # given two customers of different teams, both consenting
    grant(customer)
    grant(foreign_customer)
    # when each user selects their audience, in either order of the two filters
    mine_a = set(consented_to(Customer.objects.restrict(owner, "view"), "marketing_email"))
    mine_b = set(consented_to(Customer.objects.all(), "marketing_email").restrict(owner, "view"))
    theirs = set(consented_to(Customer.objects.restrict(outsider, "view"), "marketing_email"))
    # then each sees only their team's consenting customer
    assert mine_a == mine_b == {customer}
    assert theirs == {foreign_customer}


def test_an_unknown_purpose_code_is_an_error_not_an_empty_audience():
    # given a typo in a segment definition
    # then it fails loudly instead of silently selecting nobody
    with pytest.raises(ValidationError, match="登録されていません"):
        consented_to(Customer.objects.all(), "marketing_emial")


def test_an_unpublished_purpose_selects_nobody(customer, grant):
    # given a consent to a purpose later withdrawn from publication
    grant(customer, code="personalisation")
    services.purpose_update_settings(purpose=Purpose.objects.get(code="personalisation"), is_published=False)
    # then nobody may be used for it
    assert not consented_to(Customer.objects.all(), "personalisation").exists()


def test_withdrawn_since_counts_the_period_from_the_next_day(customer, teammate_customer, grant, withdraw):
    # given one customer who withdrew on 2026-04-01 10:00 JST, another who withdrew then granted again
    from consent.selectors import withdrawn_since

    grant(customer, when=at("2026-03-01 10:00"))
    withdraw(customer, when=at("2026-04-01 10:00"))
    withdraw(teammate_customer, when=at("2026-04-01 10:00"))
    grant(teammate_customer, when=at("2026-04-15 10:00"))
    # when the retention trigger asks for withdrawals at least 30 days old
    on_day_30 = set(withdrawn_since("marketing_email", 30, as_of=at("2026-05-01 23:00")))
    on_day_31 = {
        row["customer_id"] for row in withdrawn_since("marketing_email", 30, as_of=at("2026-05-02 00:00"))
    }
    # then 30 full days have passed only from 2026-05-02 (JST), and a re-grant is never included
    assert on_day_30 == set()
    assert on_day_31 == {customer.pk}


def test_withdrawn_since_refuses_an_unknown_code():
    # given a typo in a retention policy
    # then it fails loudly
    from consent.selectors import withdrawn_since

    with pytest.raises(ValidationError, match="登録されていません"):
        withdrawn_since("marketing_emial", 30)
