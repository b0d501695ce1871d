"""A customer's status is a fact: it changes only through the service that makes it true (stop-use,
resume, closing, anonymisation, erasure), offered as actions of the customer page to those who may."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from crm import services
from crm.models import AuditEntry, Customer, CustomerEvent, Purchase
from crm.retention import services as retention_services
from crm.retention.models import LegalHold, Tombstone
from tests.crm.adminforms import admin_form_data

pytestmark = pytest.mark.django_db


def _change_url(customer: Customer) -> str:
    return reverse("admin:crm_customer_change", args=[customer.pk])


def _action_url(customer: Customer, slug: str) -> str:
    return reverse(f"admin:crm_customer_{slug.replace('-', '_')}", args=[customer.pk])


def _status_entries(customer: Customer) -> list[AuditEntry]:
    ct = ContentType.objects.get_for_model(Customer)
    return [
        e
        for e in AuditEntry.objects.filter(
            content_type=ct, object_pk=str(customer.pk), action=AuditEntry.Action.UPDATE
        ).order_by("id")
        if "status" in (e.changes or {})
    ]


# --- the form -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["anonymised", "closed", "stop_use"])
def test_a_staff_member_cannot_change_status_through_the_form(client, teammate, customer, status):
    # given a team member (masked view) on the customer's change form
    client.force_login(teammate)
    data = admin_form_data(teammate, customer, status=status)
    # when they post the form with another status
    response = client.post(_change_url(customer), data)
    # then the form saves, but the status stays what the data is, and every personal value is as it was
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.status == Customer.Status.ACTIVE
    assert (customer.family_name, customer.email) == ("山田", "taro.yamada@example.com")
    assert _status_entries(customer) == []


def test_the_form_shows_the_status_read_only_with_the_actions_the_user_may_take(
    client, teammate, owner, customer
):
    # given a team member and the team lead
    client.force_login(teammate)
    member_page = client.get(_change_url(customer)).content.decode()
    client.force_login(owner)
    lead_page = client.get(_change_url(customer)).content.decode()
    # then neither page has a status input; both show the status and the actions that change it
    for page in (member_page, lead_page):
        assert 'name="status"' not in page
        assert "有効" in page
        assert _action_url(customer, "stop-use") in page and _action_url(customer, "close") in page
    # and only the lead, who may erase, is offered erasure and anonymisation
    assert _action_url(customer, "erase") not in member_page
    assert _action_url(customer, "anonymise") not in member_page
    assert _action_url(customer, "erase") in lead_page and _action_url(customer, "anonymise") in lead_page


def test_a_new_customer_is_active_whatever_the_form_says(client, teammate, team):
    # given a team member on the add form
    client.force_login(teammate)
    # when they post a new customer claiming to be anonymised
    response = client.post(
        reverse("admin:crm_customer_add"),
        {
            "team": team.pk,
            "status": "anonymised",
            "family_name": "佐藤",
            "collection_channel": Customer.Channel.WEB_FORM,
            "collected_at_0": "2026-01-01",
            "collected_at_1": "10:00:00",
            "preferences": "{}",
        },
    )
    # then it is created as 有効
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Customer.objects.get(team=team).status == Customer.Status.ACTIVE


# --- the services ---------------------------------------------------------------------------------------


def test_stop_use_and_resume_are_audited_and_change_what_may_be_recorded(teammate, customer):
    # given an active customer
    # when a team member stops their use (利用停止)
    services.customer_stop_use(customer=customer, actor=teammate)
    customer.refresh_from_db()
    # then the status says so, no behavioural event is recorded for them, and the audit trail names the actor
    assert customer.status == Customer.Status.STOP_USE
    with pytest.raises(ValidationError):
        services.event_record(kind="page_view", occurred_at=customer.created_at, customer=customer)
    [entry] = _status_entries(customer)
    assert entry.actor_id == teammate.pk
    assert entry.changes["status"] == ["active", "stop_use"]
    # when the use is resumed
    services.customer_resume_use(customer=customer, actor=teammate)
    customer.refresh_from_db()
    # then the customer is active again, and that is audited too
    assert customer.status == Customer.Status.ACTIVE
    assert len(_status_entries(customer)) == 2
    assert CustomerEvent.objects.count() == 0


def test_closing_records_the_time_it_happened(teammate, customer):
    # given an active customer without a closing time
    assert customer.closed_at is None
    # when a team member records 退会
    services.customer_close(customer=customer, actor=teammate)
    customer.refresh_from_db()
    # then the status and the closing time are set
    assert customer.status == Customer.Status.CLOSED
    assert customer.closed_at is not None


@pytest.mark.parametrize(
    ("status", "call"),
    [
        ("active", "customer_resume_use"),
        ("closed", "customer_stop_use"),
        ("stop_use", "customer_close"),
        ("anonymised", "customer_resume_use"),
        ("anonymised", "customer_stop_use"),
        ("anonymised", "customer_close"),
    ],
)
def test_a_change_from_the_wrong_status_is_refused(teammate, customer, status, call):
    # given a customer in `status`
    Customer.objects.filter(pk=customer.pk).update(status=status)
    customer.refresh_from_db()
    # when a service that does not start from that status is called
    # then it is refused and the status stays
    with pytest.raises(ValidationError):
        getattr(services, call)(customer=customer, actor=teammate)
    customer.refresh_from_db()
    assert customer.status == status


@pytest.mark.parametrize("call", ["customer_stop_use", "customer_close"])
def test_a_user_outside_the_team_may_not_change_the_status(outsider, privacy_officer, customer, call):
    # given users the gate does not open the customer to for change or erasure
    for user in (outsider, privacy_officer):
        # when they call the service
        # then it is refused and nothing changes
        with pytest.raises(PermissionDenied):
            getattr(services, call)(customer=customer, actor=user)
    customer.refresh_from_db()
    assert customer.status == Customer.Status.ACTIVE


def test_the_support_desk_carries_out_a_stop_use_request(support_agent, foreign_customer):
    # given the request desk, who answers 利用停止 requests for every team (APPI Art. 35)
    # when it stops the use of any team's customer
    services.customer_stop_use(customer=foreign_customer, actor=support_agent)
    # then it is done
    foreign_customer.refresh_from_db()
    assert foreign_customer.status == Customer.Status.STOP_USE


# --- the page's actions ---------------------------------------------------------------------------------


def test_a_team_member_stops_use_from_the_customer_page(client, teammate, customer):
    # given a team member on the stop-use confirmation page
    client.force_login(teammate)
    page = client.get(_action_url(customer, "stop-use"))
    assert page.status_code == 200
    assert "利用停止" in page.content.decode()
    # when they confirm
    response = client.post(_action_url(customer, "stop-use"), {"confirm": "1"})
    # then they are back on the customer page, and the customer's use is stopped
    assert response.status_code == 302 and response.url == _change_url(customer)
    customer.refresh_from_db()
    assert customer.status == Customer.Status.STOP_USE


def test_an_action_for_another_status_is_not_offered_and_changes_nothing(client, teammate, customer):
    # given an active customer
    client.force_login(teammate)
    # when a team member posts "resume use" by hand
    response = client.post(_action_url(customer, "resume-use"), {"confirm": "1"}, follow=True)
    # then they are sent back with a message, and nothing changed
    assert response.redirect_chain == [(_change_url(customer), 302)]
    assert len(list(response.context["messages"])) == 1
    customer.refresh_from_db()
    assert customer.status == Customer.Status.ACTIVE


@pytest.mark.parametrize("user_name", ["owner", "support_agent"])
def test_erase_from_the_customer_page(client, request, customer, user_name):
    # given a team lead or the support desk, and a customer with a purchase
    user = request.getfixturevalue(user_name)
    Purchase.objects.create(
        customer=customer,
        team=customer.team,
        order_no="ORD-1",
        amount=1000,
        channel="web_form",
        purchased_at=customer.created_at,
    )
    client.force_login(user)
    # when they open the erase confirmation page
    page = client.get(_action_url(customer, "erase"))
    html = page.content.decode()
    # then it lists what will be removed and what is kept, without a personal value
    assert page.status_code == 200
    assert "メールアドレス" in html and "電話番号" in html
    assert "購買" in html and "法定の保存期間" in html
    for value in ("山田", "taro.yamada", "+81", "090-"):
        assert value not in html
    # when they confirm with a ground
    response = client.post(_action_url(customer, "erase"), {"confirm": "1", "reason": "request"})
    # then the customer is erased through the service: gone, a tombstone kept, the purchase unlinked
    assert response.status_code == 302 and response.url == reverse("admin:crm_customer_changelist")
    assert not Customer.objects.filter(pk=customer.pk).exists()
    assert Tombstone.objects.filter(reason="admin:request").count() == 1
    assert Purchase.objects.get(order_no="ORD-1").customer_id is None


@pytest.mark.parametrize("user_name", ["owner", "support_agent"])
def test_anonymise_from_the_customer_page(client, request, customer, user_name):
    # given a team lead or the support desk
    client.force_login(request.getfixturevalue(user_name))
    # when they open the anonymise page and confirm
    page = client.get(_action_url(customer, "anonymise"))
    assert page.status_code == 200
    assert "年代" in page.content.decode()  # birth date → age band
    response = client.post(_action_url(customer, "anonymise"), {"confirm": "1", "reason": "no_longer_needed"})
    # then the service anonymised the customer: status and data agree
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.status == Customer.Status.ANONYMISED
    assert (customer.family_name, customer.email, customer.phone) == ("", "", "")


@pytest.mark.parametrize("slug", ["erase", "anonymise"])
def test_erase_and_anonymise_are_refused_to_staff(client, teammate, privacy_officer, customer, slug):
    # given a team member and the privacy officer, who may view the customer but not erase
    for user in (teammate, privacy_officer):
        client.force_login(user)
        # when they open the page or post the action by hand
        # then both are refused, and the customer is untouched
        assert client.get(_action_url(customer, slug)).status_code == 403
        posted = client.post(_action_url(customer, slug), {"confirm": "1", "reason": "request"})
        assert posted.status_code == 403
    customer.refresh_from_db()
    assert customer.status == Customer.Status.ACTIVE and customer.family_name == "山田"


def test_a_customer_of_another_team_does_not_exist_on_the_action_pages(client, outsider, customer):
    # given an outsider
    client.force_login(outsider)
    # when they open the erase page of another team's customer
    response = client.post(_action_url(customer, "erase"), {"confirm": "1", "reason": "request"}, follow=True)
    # then they are sent to the index as for the change page, and the customer is untouched
    assert response.redirect_chain == [(reverse("admin:index"), 302)]
    assert Customer.objects.filter(pk=customer.pk).exists()


def test_a_legal_hold_is_listed_and_keeps_the_customer(client, owner, privacy_officer, customer):
    # given a legal hold on the customer
    retention_services.legal_hold_place(
        customer_ids=[customer.pk],
        reason=LegalHold.Reason.LITIGATION,
        placed_by=privacy_officer,
        reference="L-7",
    )
    client.force_login(owner)
    # when the team lead opens the erase page
    html = client.get(_action_url(customer, "erase")).content.decode()
    # then the hold is listed
    assert "L-7" in html and "訴訟" in html
    # and confirming erases nothing
    response = client.post(_action_url(customer, "erase"), {"confirm": "1", "reason": "request"}, follow=True)
    assert response.redirect_chain == [(_change_url(customer), 302)]
    customer.refresh_from_db()
    assert (customer.status, customer.family_name) == (Customer.Status.ACTIVE, "山田")
