"""Provision records (APPI 29/30), cross-border bases (APPI 28) and the export to a recipient (issue #16)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from consent import services as consent_services
from consent.models import Purpose
from consent.provision import rules, selectors, services
from consent.provision.models import (
    CrossBorderBasis,
    ProvisionRecord,
    ProvisionSubject,
    ReceiptRecord,
    Recipient,
)
from consent.provision.services import ProvisionRefused
from crm.models import AuditEntry, Customer
from tests.factories import CustomerFactory

EMAIL = ["crm.Customer.email"]
NOTIFIED = dt.date(2026, 1, 5)


def _provide(officer, recipient, customers, on=dt.date(2026, 4, 1), **kwargs):
    kwargs.setdefault("basis", rules.BASIS_OPT_OUT)
    kwargs.setdefault("opt_out_notified_on", NOTIFIED)
    return services.provision_record(
        actor=officer,
        recipient=recipient,
        customer_ids=[c.pk for c in customers],
        data_items=EMAIL,
        on=on,
        **kwargs,
    )


# --- the rule of 規則21 ------------------------------------------------------------------------------------


def test_records_are_kept_three_years_or_one_where_the_contract_is_the_record():
    made = dt.date(2026, 4, 1)
    assert rules.record_keep_until(basis="consent", created_on=made, last_provided_on=made, batch=False) == (
        dt.date(2029, 4, 1)
    )
    # a batch record counts from the last provision (規則21(2))
    assert rules.record_keep_until(
        basis="opt_out", created_on=made, last_provided_on=dt.date(2026, 9, 30), batch=True
    ) == dt.date(2029, 9, 30)
    # the contract as the record: one year from the last provision (規則21(1))
    assert rules.record_keep_until(
        basis="contract_as_record", created_on=made, last_provided_on=dt.date(2026, 6, 30), batch=False
    ) == dt.date(2027, 6, 30)
    # 29 February falls on 28 February in a common year
    leap = dt.date(2028, 2, 29)
    assert rules.record_keep_until(basis="consent", created_on=leap, last_provided_on=leap, batch=False) == (
        dt.date(2031, 2, 28)
    )


# --- provision records --------------------------------------------------------------------------------------


def test_a_provision_record_links_its_people_and_items(officer, partner, team):
    # given two customers
    people = [CustomerFactory(team=team), CustomerFactory(team=team)]
    # when their e-mail addresses are provided to a domestic third party by opt-out
    record = _provide(officer, partner, people)
    # then one record names the recipient, the date, the items, the basis and both people
    assert record.recipient == partner
    assert (record.first_provided_on, record.last_provided_on) == (dt.date(2026, 4, 1), dt.date(2026, 4, 1))
    assert record.data_items == EMAIL
    assert set(record.subjects.values_list("customer_id", flat=True)) == {p.pk for p in people}
    assert record.keep_until == dt.date(2029, 4, 1)


def test_opt_out_before_the_ppc_was_notified_is_refused(officer, partner, customer):
    with pytest.raises(ProvisionRefused):
        _provide(officer, partner, [customer], on=dt.date(2026, 1, 4))
    assert not ProvisionRecord.objects.exists()


def test_consent_based_provision_needs_everyones_consent(officer, partner, team):
    # given two customers, one of whom consented to third-party provision
    yes, no = CustomerFactory(team=team), CustomerFactory(team=team)
    consent_services.consent_grant(customer=yes, purpose_code="third_party_provision", channel="web_form")
    # when both are provided on consent, then it is refused whole, with no record written
    with pytest.raises(ProvisionRefused, match="1人の同意がありません"):
        _provide(officer, partner, [yes, no], basis="consent", purpose_code="third_party_provision")
    assert not ProvisionRecord.objects.exists()
    # and the one who consented may be provided
    record = _provide(officer, partner, [yes], basis="consent", purpose_code="third_party_provision")
    assert list(record.subjects.values_list("customer_id", flat=True)) == [yes.pk]


def test_a_person_in_stop_use_is_never_provided(officer, partner, team):
    # given a customer who asked to stop use and third-party provision (APPI 35)
    stopped = CustomerFactory(team=team, status=Customer.Status.STOP_USE)
    with pytest.raises(ProvisionRefused, match="法第35条"):
        _provide(officer, partner, [CustomerFactory(team=team), stopped])
    assert not ProvisionRecord.objects.exists()


def test_special_care_data_is_never_provided_by_opt_out(officer, partner, customer):
    with pytest.raises(ProvisionRefused, match="法第27条2項"):
        services.provision_record(
            actor=officer,
            recipient=partner,
            customer_ids=[customer.pk],
            data_items=["consent.SpecialCareRecord.content"],
            basis="opt_out",
            opt_out_notified_on=NOTIFIED,
            on=dt.date(2026, 4, 1),
        )
    assert not ProvisionRecord.objects.exists()


def test_repeated_provision_is_recorded_in_batch(officer, partner, team):
    a, b = CustomerFactory(team=team), CustomerFactory(team=team)
    first = _provide(officer, partner, [a], batch=True, on=dt.date(2026, 4, 1))
    second = _provide(officer, partner, [a, b], batch=True, on=dt.date(2026, 5, 1))
    # then the same record covers both provisions, counted from the last one
    assert second.pk == first.pk
    second.refresh_from_db()
    assert (second.first_provided_on, second.last_provided_on, second.provisions) == (
        dt.date(2026, 4, 1),
        dt.date(2026, 5, 1),
        2,
    )
    assert second.keep_until == dt.date(2029, 5, 1)
    assert ProvisionSubject.objects.filter(record=second).count() == 2


def test_a_customer_the_actor_cannot_see_is_refused_whole(partner, team, other_team, owner):
    mine, theirs = CustomerFactory(team=team), CustomerFactory(team=other_team)
    with pytest.raises(ProvisionRefused):
        _provide(owner, partner, [mine, theirs])
    assert not ProvisionRecord.objects.exists()


# --- cross-border (APPI 28) ------------------------------------------------------------------------------


def test_a_foreign_recipient_without_a_basis_is_refused(officer, us_processor, customer):
    # given a US processor with a contract but no cross-border basis on file
    # when personal data would be provided to it
    with pytest.raises(ProvisionRefused, match="法第28条"):
        _provide(officer, us_processor, [customer], basis="entrustment")
    # then nothing is recorded (and so nothing can leave)
    assert not ProvisionRecord.objects.exists()


def test_a_designated_country_needs_no_consent(officer, de_group, customer):
    CrossBorderBasis.objects.create(
        recipient=de_group, kind="designated_country", effective_on=dt.date(2026, 1, 1)
    )
    record = _provide(officer, de_group, [customer])
    assert record.pk is not None


def test_an_equivalent_system_basis_holds_until_its_check_is_due(officer, us_processor, customer):
    # given an equivalent-system basis whose periodic check is due on 2026-06-30 (規則18)
    CrossBorderBasis.objects.create(
        recipient=us_processor,
        kind="equivalent_system",
        recipient_measures="契約で担保",
        effective_on=dt.date(2026, 1, 1),
        next_check_on=dt.date(2026, 6, 30),
    )
    # then a provision on the due day passes, and one the day after is refused
    assert _provide(officer, us_processor, [customer], basis="entrustment", on=dt.date(2026, 6, 30)).pk
    with pytest.raises(ProvisionRefused, match="法第28条"):
        _provide(officer, us_processor, [customer], basis="entrustment", on=dt.date(2026, 7, 1))


def test_a_consent_basis_needs_each_persons_cross_border_consent(officer, team):
    # given a US third party whose basis is consent after the required information (規則17)
    us = Recipient.objects.create(name="US Partner", kind=Recipient.Kind.THIRD_PARTY, country="US")
    CrossBorderBasis.objects.create(
        recipient=us,
        kind="consent",
        purpose=Purpose.objects.get(code="cross_border_transfer"),
        country_regime="米国: 連邦の包括的な法律はなく、州法（CCPA等）",
        recipient_measures="プライバシーポリシーと契約による安全管理",
        effective_on=dt.date(2026, 1, 1),
    )
    person = CustomerFactory(team=team)
    # when the person has not consented to the cross-border transfer, then it is refused
    with pytest.raises(ProvisionRefused, match="法第28条1項"):
        _provide(officer, us, [person])
    # and after consent it passes
    consent_services.consent_grant(customer=person, purpose_code="cross_border_transfer", channel="web_form")
    assert _provide(officer, us, [person]).pk


def test_a_consent_basis_without_its_purpose_refuses(officer, customer):
    us = Recipient.objects.create(name="US Partner", kind=Recipient.Kind.THIRD_PARTY, country="US")
    CrossBorderBasis.objects.create(  # written past the form's check (clean), e.g. by a script
        recipient=us,
        kind="consent",
        country_regime="州法",
        recipient_measures="契約",
        effective_on=dt.date(2026, 1, 1),
    )
    with pytest.raises(ProvisionRefused, match="利用目的が登録されていません"):
        _provide(officer, us, [customer])


# --- the export to a recipient (admin) --------------------------------------------------------------------


def _provide_form(customers, **extra):
    return {
        "customer_ids": " ".join(str(c.pk) for c in customers),
        "items": ["email", "family_name"],
        "basis": "opt_out",
        "opt_out_notified_on": "2026-01-05",
        **extra,
    }


def test_export_to_a_foreign_recipient_without_a_basis_sends_nothing(client, officer, us_processor, customer):
    # given the privacy officer on a US processor's page
    client.force_login(officer)
    url = reverse("admin:consent_recipient_provide", args=[us_processor.pk])
    # when they export a customer to it
    response = client.post(url, _provide_form([customer], basis="entrustment"))
    # then the form comes back with the refusal: no CSV, no record
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert "法第28条" in response.content.decode()
    assert not ProvisionRecord.objects.exists()


def test_export_writes_the_record_before_the_data(client, officer, partner, customer, monkeypatch):
    client.force_login(officer)
    url = reverse("admin:consent_recipient_provide", args=[partner.pk])
    # given a provision record that cannot be written
    real = services.provision_record

    def fails(**kwargs):
        raise ProvisionRefused("記録できません")

    monkeypatch.setattr(services, "provision_record", fails)
    # when the export is asked for, then no data leaves
    refused = client.post(url, _provide_form([customer]))
    assert refused["Content-Type"].startswith("text/html")
    assert "taro.yamada@example.com" not in refused.content.decode()
    # and with the service working, the CSV holds the person and the record exists, linking them
    monkeypatch.setattr(services, "provision_record", real)
    response = client.post(url, _provide_form([customer]))
    assert response["Content-Type"].startswith("text/csv")
    assert 'attachment; filename="provision-' in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    assert "taro.yamada@example.com" in body and "山田" in body
    record = ProvisionRecord.objects.get()
    assert list(record.subjects.values_list("customer_id", flat=True)) == [customer.pk]
    assert record.data_items == ["crm.Customer.email", "crm.Customer.family_name"]
    # and the read in clear is in the audit trail, by ids only
    entry = AuditEntry.objects.get(object_pk=f"provision:{record.pk}", action=AuditEntry.Action.ACCESS)
    assert entry.additional_data["export"]["ids"] == [customer.pk]
    assert "yamada" not in str(entry.additional_data).lower()


def test_staff_cannot_export_to_a_recipient(client, pii_staff, partner, customer):
    client.force_login(pii_staff)
    response = client.post(
        reverse("admin:consent_recipient_provide", args=[partner.pk]), _provide_form([customer])
    )
    assert response.status_code == 403
    assert not ProvisionRecord.objects.exists()


@pytest.fixture
def pii_staff(teammate):
    teammate.user_permissions.add(Permission.objects.get(codename="view_customer_pii"))
    return teammate


# --- the disclosure package's selector (APPI 33(5)) ---------------------------------------------------------


def test_provision_records_for_a_customer_list_what_was_given_and_received(
    officer, partner, customer, outsider
):
    _provide(officer, partner, [customer])
    services.receipt_record(
        actor=officer,
        provider_name="提供元株式会社",
        provider_address="東京都港区1-1",
        acquisition="自社の会員登録で取得",
        customer_ids=[customer.pk],
        data_items=EMAIL,
        basis="consent",
        received_on=dt.date(2026, 3, 1),
    )
    other = CustomerFactory(team=customer.team)
    _provide(officer, partner, [other], on=dt.date(2026, 4, 2))
    # when the package asks for the customer's records
    package = selectors.provision_records_for_customer(user=officer, customer_id=customer.pk)
    # then it lists the provision to the partner and the receipt, and nothing about the other person
    assert [(p["recipient"], p["first_provided_on"]) for p in package["provided"]] == [
        ("提携ポイント株式会社", "2026-04-01")
    ]
    assert [(r["provider"], r["received_on"]) for r in package["received"]] == [
        ("提供元株式会社", "2026-03-01")
    ]
    # and a user who may not see the customer gets nothing
    assert selectors.provision_records_for_customer(user=outsider, customer_id=customer.pk) == {
        "provided": [],
        "received": [],
    }


def test_receipt_form_records_the_provider_and_how_they_acquired_it(client, officer, customer):
    client.force_login(officer)
    response = client.post(
        reverse("admin:consent_receiptrecord_add"),
        {
            "provider_name": "提供元株式会社",
            "provider_address": "東京都港区1-1",
            "acquisition": "自社イベントの申込で取得",
            "customer_ids": str(customer.pk),
            "data_items": ["email"],
            "basis": "consent",
            "received_on": "2026-03-01",
        },
    )
    assert response.status_code == 302
    record = ReceiptRecord.objects.get()
    assert (record.acquisition, record.keep_until) == (
        "自社イベントの申込で取得",
        record.created_on.replace(year=record.created_on.year + 3),
    )
    assert list(record.subjects.values_list("customer_id", flat=True)) == [customer.pk]
