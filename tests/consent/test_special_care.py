"""要配慮個人情報 is written only with the customer's consent on record (APPI Art. 20(2))."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from consent import services
from consent.models import SpecialCareRecord

pytestmark = pytest.mark.django_db


def _write(customer, actor=None, code="special_care_health"):
    return services.special_care_record_create(
        customer=customer, purpose_code=code, kind="medical_history", content="小麦アレルギー", actor=actor
    )


def test_refused_without_a_consent_row(customer, owner):
    # given a customer with no consent for the health purpose
    # when staff try to note an allergy
    with pytest.raises(ValidationError) as exc:
        _write(customer, owner)
    # then it is refused, citing the article, and nothing is stored
    assert "第20条第2項" in " ".join(exc.value.messages)
    assert not SpecialCareRecord.objects.exists()


def test_written_with_consent_and_linked_to_it(customer, owner, grant):
    # given the customer's express consent to the health purpose
    event = grant(customer, code="special_care_health", channel="paper")
    # when the allergy is noted
    record = _write(customer, owner)
    # then it is stored (encrypted), pointing at the consent that allowed it
    record = SpecialCareRecord.objects.get(pk=record.pk)
    assert record.content == "小麦アレルギー"
    assert record.consent_event_id == event.pk
    assert record.recorded_by == owner
    assert str(record) == f"要配慮個人情報 #{record.pk}"


def test_refused_after_withdrawal(customer, grant, withdraw):
    # given consent given then withdrawn
    grant(customer, code="special_care_health")
    withdraw(customer, code="special_care_health")
    # then writing is refused again
    with pytest.raises(ValidationError, match="第20条第2項"):
        _write(customer)


def test_a_consent_to_another_purpose_does_not_count(customer, grant):
    # given a marketing consent only
    grant(customer, code="marketing_email")
    # when special-care data is written "under" the marketing purpose
    # then it is refused: that purpose is not for special-care data
    with pytest.raises(ValidationError, match="要配慮個人情報の取得を目的とするものではありません"):
        _write(customer, code="marketing_email")
    with pytest.raises(ValidationError, match="第20条第2項"):
        _write(customer)
