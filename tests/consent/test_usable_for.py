"""consent.selectors.usable_for(customers, code): "may this customer be used for this purpose now", decided by
the purpose's lawful basis (issue #17), with objections (GDPR Art. 21) recorded and honoured."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.utils import DatabaseError

from consent import services
from consent.models import ConsentState, LedgerImmutableError, Objection, Purpose, PurposeVersion
from consent.selectors import usable_for
from crm import services as crm_services
from crm.models import Customer
from crm.retention import services as retention_services
from tests.consent.conftest import purpose_revised
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

ADMIN = Objection.Source.ADMIN
PURPOSE, DIRECT_MARKETING = Objection.Scope.PURPOSE, Objection.Scope.DIRECT_MARKETING


@pytest.fixture
def tax_records(db):
    """A purpose kept for a legal obligation (法人税法: books and records), GDPR Art. 6(1)(c)."""
    return services.purpose_create(
        code="tax_records",
        category="customer_management",
        legal_basis="legal_obligation",
        title_ja="税務帳簿の保存",
        title_en="Keeping tax records",
        description_ja="法人税法に基づき取引の記録を保存するため。",
        description_en="To keep transaction records as the Corporation Tax Act requires.",
    )


def _selected(user, code):
    """Both orders of the gate and the rule: they must agree."""
    a = set(usable_for(Customer.objects.restrict(user, "view"), code))
    b = set(usable_for(Customer.objects.all(), code).restrict(user, "view"))
    assert a == b
    return a


# The purpose used for each basis, and for the "granted"/"withdrawn" states the consent purpose the customer
# answers (a consent to something else says nothing about a contract or legal-obligation purpose).
BASIS_PURPOSE = {
    "consent": "marketing_email",
    "contract": "customer_management",
    "legitimate_interest": "analytics",
    "legal_obligation": "tax_records",
}

# Worked answers, written out (not computed): usable for a purpose of this basis in this state?
# fmt: off
EXPECTED = {
    #                      granted withdrawn never  objected stop_use closed anonymised
    "consent":             (True,  False,    False, False,   False,   False, False),
    "contract":            (True,  True,     True,  True,    False,   False, False),
    "legitimate_interest": (True,  True,     True,  False,   False,   False, False),
    "legal_obligation":    (True,  True,     True,  True,    True,    True,  False),
}
# fmt: on
STATES = ("granted", "withdrawn", "never_asked", "objected", "stop_use", "closed", "anonymised")


def _put_in_state(customer, state, basis, grant, withdraw):
    if state != "never_asked":
        grant(customer)  # marketing_email: the consent purpose
    if state == "withdrawn":
        withdraw(customer)
    elif state == "objected":
        if basis == "legitimate_interest":
            services.objection_record(
                customer=customer, scope=PURPOSE, purpose_code="analytics", source=ADMIN
            )
        else:
            # The objection a person can make whatever the basis: to direct marketing (GDPR Art. 21(2)).
            services.objection_record(customer=customer, scope=DIRECT_MARKETING, source=ADMIN)
    elif state in ("stop_use", "closed"):
        # through the services that make the status true (the form and customer_update refuse it)
        move = crm_services.customer_stop_use if state == "stop_use" else crm_services.customer_close
        move(customer=customer, actor=_status_actor())
    elif state == "anonymised":
        retention_services.customer_anonymise(customer_ids=[customer.pk], reason="テスト", actor=None)


def _status_actor():
    """A user the gate lets change every customer's status (the support desk acting on a request)."""
    from tests.factories import UserFactory

    return UserFactory(username=f"status-actor-{UserFactory._meta.model.objects.count()}", is_superuser=True)


@pytest.mark.parametrize("basis", list(EXPECTED))
@pytest.mark.parametrize("state", STATES)
def test_usable_for_by_basis_and_state(
    basis, state, customer, foreign_customer, owner, outsider, grant, withdraw, tax_records
):
    # given the owner's customer in `state`, and a customer of another team usable for every purpose
    _put_in_state(customer, state, basis, grant, withdraw)
    grant(foreign_customer)
    code = BASIS_PURPOSE[basis]
    # when the owner (one team) and the outsider (the other team only) select for the purpose
    mine = _selected(owner, code)
    theirs = _selected(outsider, code)
    # then the owner gets their customer exactly when the basis allows it, never the other team's;
    # the outsider never gets the owner's customer
    expected = EXPECTED[basis][STATES.index(state)]
    assert mine == ({Customer.objects.get(pk=customer.pk)} if expected else set())
    assert theirs == {foreign_customer}


def test_an_objection_to_direct_marketing_removes_from_every_marketing_purpose_at_once(customer, grant):
    # given a customer who consented to e-mail and to personalisation, and is usable for analytics
    grant(customer, code="marketing_email")
    grant(customer, code="personalisation")
    everyone = Customer.objects.all()
    assert usable_for(everyone, "marketing_email").exists()
    # when they object to direct marketing (GDPR Art. 21(2))
    services.objection_record(customer=customer, scope=DIRECT_MARKETING, source=ADMIN)
    # then both marketing purposes drop them, though the consents are still granted; analytics does not
    assert not usable_for(everyone, "marketing_email").exists()
    assert not usable_for(everyone, "personalisation").exists()
    assert usable_for(everyone, "analytics").get() == customer
    assert ConsentState.objects.filter(customer=customer, granted=True).count() == 2


def test_compelling_grounds_answer_an_objection_only_by_the_privacy_officer(customer, owner, privacy_officer):
    # given an objection to analytics (legitimate interest)
    objection = services.objection_record(
        customer=customer, scope=PURPOSE, purpose_code="analytics", source=ADMIN
    )
    assert not usable_for(Customer.objects.all(), "analytics").exists()
    # when a team owner tries to override it
    # then they are refused and nothing is written
    with pytest.raises(PermissionDenied):
        services.objection_decide_compelling_grounds(objection=objection, reason="必要", actor=owner)
    assert Objection.objects.count() == 1
    # when the privacy officer records compelling legitimate grounds (GDPR Art. 21(1))
    decision = services.objection_decide_compelling_grounds(
        objection=objection, reason="不正検知のため統計が不可欠", actor=privacy_officer
    )
    # then the customer is usable again, and the decision is on record with its reason
    assert usable_for(Customer.objects.all(), "analytics").get() == customer
    assert decision.answers_id == objection.pk and decision.operator == privacy_officer
    # when the person objects again, the new objection stands
    services.objection_record(customer=customer, scope=PURPOSE, purpose_code="analytics", source=ADMIN)
    assert not usable_for(Customer.objects.all(), "analytics").exists()


def test_an_objection_to_direct_marketing_cannot_be_overridden(customer, grant, privacy_officer):
    # given an objection to direct marketing
    grant(customer)
    objection = services.objection_record(customer=customer, scope=DIRECT_MARKETING, source=ADMIN)
    # when the privacy officer tries to override it
    # then it is refused (GDPR Art. 21(3)) and the customer stays out
    with pytest.raises(ValidationError, match="第21条3項"):
        services.objection_decide_compelling_grounds(
            objection=objection, reason="売上", actor=privacy_officer
        )
    assert not usable_for(Customer.objects.all(), "marketing_email").exists()


def test_a_decision_needs_a_reason(customer, privacy_officer):
    objection = services.objection_record(
        customer=customer, scope=PURPOSE, purpose_code="analytics", source=ADMIN
    )
    with pytest.raises(ValidationError):
        services.objection_decide_compelling_grounds(objection=objection, reason="  ", actor=privacy_officer)
    assert Objection.objects.count() == 1


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("marketing_email", "同意の撤回"),
        ("customer_management", "法第35条"),
        ("no_such", "登録されていません"),
    ],
)
def test_an_objection_to_a_purpose_not_based_on_legitimate_interest_is_refused(customer, code, message):
    # given a purpose based on consent (withdraw instead) or contract (stop-use instead), or a typo
    # then the objection is refused with the way that applies, and nothing is written
    with pytest.raises(ValidationError, match=message):
        services.objection_record(customer=customer, scope=PURPOSE, purpose_code=code, source=ADMIN)
    assert not Objection.objects.exists()


def test_the_same_objection_twice_is_recorded_once(customer):
    first = services.objection_record(customer=customer, scope=DIRECT_MARKETING, source=ADMIN)
    second = services.objection_record(customer=customer, scope=DIRECT_MARKETING, source=ADMIN)
    assert first.pk == second.pk and Objection.objects.count() == 1


def test_an_anonymised_customer_cannot_object(customer):
    retention_services.customer_anonymise(customer_ids=[customer.pk], reason="テスト", actor=None)
    with pytest.raises(ValidationError, match="匿名化"):
        services.objection_record(customer=customer, scope=DIRECT_MARKETING, source=ADMIN)


def test_the_objection_ledger_is_append_only(customer):
    # given a recorded objection
    objection = services.objection_record(customer=customer, scope=DIRECT_MARKETING, source=ADMIN)
    # then neither the ORM nor raw SQL can change or delete it
    with pytest.raises(LedgerImmutableError):
        objection.save()
    with pytest.raises(LedgerImmutableError):
        Objection.objects.filter(pk=objection.pk).delete()
    for sql in ("UPDATE consent_objection SET scope = 'purpose'", "DELETE FROM consent_objection"):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cur:
            cur.execute(sql)
    assert Objection.objects.get(pk=objection.pk).scope == DIRECT_MARKETING


def test_a_purpose_cannot_leave_consent_while_consents_stand_without_a_recorded_decision(
    customer, grant, privacy_officer
):
    # given a consent to personalisation
    grant(customer, code="personalisation")
    purpose = Purpose.objects.get(code="personalisation")
    # when its basis is changed to legitimate interest without a decision
    # then it is refused and no version is added
    with pytest.raises(ValidationError, match="判断の記録"):
        purpose_revised(purpose, legal_basis="legitimate_interest", actor=privacy_officer)
    assert PurposeVersion.objects.filter(purpose=purpose).count() == 1
    # when the decision is recorded, the change is made and the decision kept on the new version
    version = purpose_revised(
        purpose,
        legal_basis="legitimate_interest",
        basis_change_reason="2026年度の方針決定（記録番号 P-12）",
        actor=privacy_officer,
    )
    assert version.legal_basis == "legitimate_interest"
    assert version.basis_change_reason.startswith("2026年度")


def test_a_purpose_without_consents_may_change_basis_freely(privacy_officer):
    purpose = Purpose.objects.get(code="personalisation")
    version = purpose_revised(purpose, legal_basis="legitimate_interest", actor=privacy_officer)
    assert version.legal_basis == "legitimate_interest"


def test_an_unknown_code_is_an_error_and_an_unpublished_purpose_selects_nobody(customer):
    with pytest.raises(ValidationError, match="登録されていません"):
        usable_for(Customer.objects.all(), "analytic")
    services.purpose_update_settings(purpose=Purpose.objects.get(code="analytics"), is_published=False)
    assert not usable_for(Customer.objects.all(), "analytics").exists()


def test_a_legal_obligation_keeps_a_held_stop_use_customer(customer, tax_records):
    # given a customer in stop-use (APPI Art. 35) and another team's closed one
    crm_services.customer_stop_use(customer=customer, actor=_status_actor())
    closed = CustomerFactory(team=customer.team, status=Customer.Status.CLOSED)
    # then the legal-obligation purpose still reaches both (GDPR 17(3)(b)), the contract one neither
    assert set(usable_for(Customer.objects.all(), "tax_records")) == {customer, closed}
    assert not usable_for(Customer.objects.all(), "customer_management").exists()


def test_erasing_or_anonymising_an_objector_works_and_the_objection_outlives_them(customer, grant):
    # given a customer who objected to direct marketing, and a teammate who objected to analytics
    grant(customer)
    services.objection_record(customer=customer, scope=DIRECT_MARKETING, source=ADMIN)
    teammate = CustomerFactory(team=customer.team)
    services.objection_record(customer=teammate, scope=PURPOSE, purpose_code="analytics", source=ADMIN)
    # when the first is erased and the second anonymised
    retention_services.customer_erase(customer_ids=[customer.pk], reason="テスト", actor=None)
    retention_services.customer_anonymise(customer_ids=[teammate.pk], reason="テスト", actor=None)
    # then both objections are still on the ledger (proof they were honoured) and nobody is selected
    assert Objection.objects.filter(customer_id__in=[customer.pk, teammate.pk]).count() == 2
    assert not Customer.objects.filter(pk=customer.pk).exists()
    for code in ("marketing_email", "analytics", "customer_management"):
        assert not usable_for(Customer.objects.all(), code).exists()
