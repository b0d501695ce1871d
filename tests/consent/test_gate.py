"""The consent models behind the one gate: no shortcut to "all customers" without the customer view
permission the gate requires first (issue #12)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from consent import selectors, services
from consent.models import ConsentEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _user_with(*perms: str):
    user = UserFactory(username="all-but-customers")
    for perm in perms:
        app_label, codename = perm.split(".", 1)
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return type(user).objects.get(pk=user.pk)


def _grant(customer):
    return services.consent_record(
        purpose_code="marketing_email",
        action=ConsentEvent.Action.GRANT,
        method=ConsentEvent.Method.OPT_IN,
        channel=ConsentEvent.Channel.WEB_FORM,
        customer=customer,
    )


def test_all_customers_without_the_customer_view_permission_opens_no_consent_row(customer):
    # given a ledger row and current state of a customer, and a user holding the consent models' view
    # permissions and "all customers", but not crm.view_customer (which the gate requires first)
    _grant(customer)
    user = _user_with("consent.view_consentevent", "consent.view_consentstate", "crm.view_all_customers")
    # when the consent selectors are asked for what the user may see
    events = selectors.consent_events_visible(user=user)
    states = selectors.consent_states_visible(user=user)
    # then nothing: no shortcut grants every customer's rows
    assert not events.exists()
    assert not states.exists()


def test_with_the_customer_view_permission_all_customers_opens_every_row(customer, foreign_customer):
    # given rows of two teams' customers and a user holding every permission the gate asks for
    _grant(customer)
    _grant(foreign_customer)
    user = _user_with(
        "consent.view_consentevent",
        "consent.view_consentstate",
        "crm.view_customer",
        "crm.view_all_customers",
    )
    # when the consent selectors are asked, then both customers' rows are there
    assert {e.customer_id for e in selectors.consent_events_visible(user=user)} == {
        customer.pk,
        foreign_customer.pk,
    }
    assert {s.customer_id for s in selectors.consent_states_visible(user=user)} == {
        customer.pk,
        foreign_customer.pk,
    }


def test_a_team_member_sees_only_their_teams_consent_rows(customer, foreign_customer, owner):
    # given rows of two teams' customers, and the lead of the first team (refused the second)
    _grant(customer)
    _grant(foreign_customer)
    # when the selectors and the gate are asked for the owner
    # then only the own team's rows come back, through the consent models' own restrict()
    assert {e.customer_id for e in selectors.consent_events_visible(user=owner)} == {customer.pk}
    assert {s.customer_id for s in selectors.consent_states_visible(user=owner)} == {customer.pk}
    assert {e.customer_id for e in ConsentEvent.objects.restrict(owner, "view")} == {customer.pk}
