import pytest

from crm.models import Customer


@pytest.mark.django_db
def test_customer_round_trip_and_restrict(customer, owner, outsider):
    # given a customer of the owner's team
    # when each user asks the gate
    mine = Customer.objects.restrict(owner, "view")
    theirs = Customer.objects.restrict(outsider, "view")
    # then only the owner sees it, with clear values read back from ciphertext
    assert list(mine) == [customer]
    assert list(theirs) == []
    fresh = Customer.objects.get(pk=customer.pk)
    assert fresh.email == "taro.yamada@example.com"
    assert fresh.phone == "+819012345678"
