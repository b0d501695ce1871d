"""第三者提供の停止 (APPI Art. 35(3)) made real: the request desk's fulfilment sets the customer's
provision-stopped fact (crm.services.customer_stop_provision, audited), and the one provision service refuses
every provision to a third party naming the person from then on."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied

from consent.provision import rules as provision_rules
from consent.provision import services as provision_services
from consent.provision.models import ProcessorContract, ProvisionRecord, Recipient
from consent.requests import services
from consent.requests.models import RequestCompletion, RequestState
from crm import services as crm_services
from crm.models import AuditEntry, Customer
from tests.consent.conftest import at, phone_request
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

ON = dt.date(2026, 4, 10)
NOTIFIED = dt.date(2026, 1, 5)


@pytest.fixture
def partner(db):
    return Recipient.objects.create(
        name="提携ポイント株式会社", kind=Recipient.Kind.THIRD_PARTY, country="JP"
    )


def _stop_request(handler, customer):
    request = phone_request(handler, kind="stop_third_party", received_at=at("2026-04-01 10:00"))
    services.request_link_customer(request=request, customer=customer, actor=handler)
    request.refresh_from_db()
    return request


def _provide(officer, recipient, customers, basis=provision_rules.BASIS_OPT_OUT, **kwargs):
    if basis == provision_rules.BASIS_OPT_OUT:
        kwargs.setdefault("opt_out_notified_on", NOTIFIED)
    return provision_services.provision_record(
        actor=officer,
        recipient=recipient,
        customer_ids=[c.pk for c in customers],
        data_items=["crm.Customer.email"],
        basis=basis,
        on=ON,
        **kwargs,
    )


def test_the_stop_is_refused_before_the_identity_is_verified(handler, officer, customer, partner):
    # given a stop-provision request linked to the customer, identity not yet verified
    request = _stop_request(handler, customer)
    # when the handler stops provision, then it is refused and the fact is not set
    with pytest.raises(services.RequestError):
        services.request_stop_provision(request=request, actor=handler)
    customer.refresh_from_db()
    assert customer.provision_stopped_at is None
    # and a provision naming the person is still recorded (nothing was stopped)
    assert _provide(officer, partner, [customer]).subjects.filter(customer=customer).exists()


def test_a_provision_is_refused_after_the_request_is_fulfilled(handler, officer, customer, team, partner):
    # given a verified stop-provision request for the customer, and another customer of the team
    other = CustomerFactory(team=team)
    request = _stop_request(handler, customer)
    services.request_verify_identity(
        request=request, actor=handler, method="id_document", evidence_reference="R-1"
    )
    request.refresh_from_db()
    # the request cannot be completed before the stop is made
    with pytest.raises(services.RequestError):
        services.request_complete(request=request, actor=handler, note="停止しました。")
    # when the handler fulfils it
    stopped = services.request_stop_provision(request=request, actor=handler)
    # then the fact is set, through the customer's audited save, by the handler
    assert stopped.provision_stopped_at is not None
    entry = AuditEntry.objects.filter(content_type__model="customer", object_pk=str(customer.pk)).latest("pk")
    assert "provision_stopped_at" in entry.changes and entry.actor_id == handler.pk
    # and a provision to a third party naming them (with someone else) is refused whole, naming nobody
    before = ProvisionRecord.objects.count()
    with pytest.raises(provision_services.ProvisionRefused) as refused:
        _provide(officer, partner, [customer, other])
    text = " ".join(refused.value.messages)
    assert "法第35条第3項" in text and "1人" in text
    assert "山田" not in text and customer.email not in text and str(customer.pk) not in text
    assert ProvisionRecord.objects.count() == before
    # and so is one by consent or with the contract as the record: every basis of provision to a third party
    contract = ProcessorContract.objects.create(
        recipient=partner, signed_on=dt.date(2025, 4, 1), document_ref="C"
    )
    with pytest.raises(provision_services.ProvisionRefused):
        _provide(
            officer,
            partner,
            [customer],
            basis=provision_rules.BASIS_CONTRACT_AS_RECORD,
            contract_id=contract.pk,
        )
    # while the other customer alone is still provided
    assert _provide(officer, partner, [other]).subjects.filter(customer=other).exists()
    # and entrustment to a processor is not provision to a third party (APPI 27(5)(i)): it goes on
    processor = Recipient.objects.create(name="配送代行株式会社", kind=Recipient.Kind.PROCESSOR, country="JP")
    ProcessorContract.objects.create(recipient=processor, signed_on=dt.date(2025, 4, 1), document_ref="P")
    _provide(officer, processor, [customer], basis=provision_rules.BASIS_ENTRUSTMENT)
    # and once completed, the completion record says provision was stopped
    services.request_complete(request=request, actor=handler, note="第三者提供を停止しました。")
    request.refresh_from_db()
    assert request.state == RequestState.COMPLETED
    assert RequestCompletion.objects.get(request=request).summary["stopped_provision"] is True


def test_the_fact_is_set_only_by_whom_the_gate_lets_change_the_customer(customer, outsider):
    # given the lead of another team, when they try to stop provision directly, then it is refused
    with pytest.raises(PermissionDenied):
        crm_services.customer_stop_provision(customer=customer, actor=outsider)
    assert Customer.objects.get(pk=customer.pk).provision_stopped_at is None


def test_the_request_page_and_the_customer_page_show_the_stop(handler, customer, client, privacy_officer):
    # given a fulfilled stop-provision request
    request = _stop_request(handler, customer)
    services.request_verify_identity(request=request, actor=handler, method="id_document")
    request.refresh_from_db()
    client.force_login(handler)
    page = client.get(f"/admin/consent/datasubjectrequest/{request.pk}/change/").content.decode()
    assert "第三者提供を停止する（法第35条第3項）" in page  # offered while not done
    services.request_stop_provision(request=request, actor=handler)
    stopped = Customer.objects.get(pk=customer.pk).provision_stopped_at
    local = stopped.astimezone(dt.timezone(dt.timedelta(hours=9))).strftime("%Y-%m-%d %H:%M")
    # then the request page shows when provision was stopped
    page = client.get(f"/admin/consent/datasubjectrequest/{request.pk}/change/").content.decode()
    assert "第三者提供の停止（法第35条第3項）" in page and local in page
    # and the customer's page shows the fact, read-only
    client.force_login(privacy_officer)
    page = client.get(f"/admin/crm/customer/{customer.pk}/change/").content.decode()
    assert "第三者提供の停止日時（法第35条第3項）" in page
    assert 'name="provision_stopped_at"' not in page
