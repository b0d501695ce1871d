"""Purposes of use: seeded codes, versioning, immutability of versions."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction

from consent import rules, services
from consent.models import LedgerImmutableError, Purpose, PurposeVersion
from tests.consent.conftest import purpose_revised

pytestmark = pytest.mark.django_db

SEEDED = {
    "customer_management",
    "customer_support",
    "marketing_email",
    "personalisation",
    "analytics",
    "third_party_provision",
    "cross_border_transfer",
    "cookies_analytics",
    "cookies_advertising",
    "special_care_health",
}


def test_the_seed_publishes_every_agreed_purpose_with_a_first_version():
    # given the migrated database
    # when the purposes are read
    purposes = {p.code: p for p in Purpose.objects.select_related("current_version")}
    # then every agreed code exists, published, at version 1, with both languages and a matching hash
    assert SEEDED <= set(purposes)
    for code in SEEDED:
        version = purposes[code].current_version
        assert purposes[code].is_published
        assert version.version == 1
        assert version.title_ja and version.title_en and version.description_ja and version.description_en
        assert version.text_hash == rules.purpose_text_hash(
            title_ja=version.title_ja,
            title_en=version.title_en,
            description_ja=version.description_ja,
            description_en=version.description_en,
            legal_basis=version.legal_basis,
        )
    assert purposes["special_care_health"].category == "special_care"


def test_changing_the_text_makes_a_new_version_and_keeps_the_old_one(privacy_officer):
    # given the marketing purpose at version 1
    purpose = Purpose.objects.get(code="marketing_email")
    v1 = purpose.current_version
    # when the privacy officer changes the Japanese description
    v2 = purpose_revised(
        purpose, description_ja=v1.description_ja + "配信頻度は月2回程度です。", actor=privacy_officer
    )
    # then version 2 is current, and version 1 is unchanged and still readable
    purpose.refresh_from_db()
    assert v2.version == 2
    assert purpose.current_version == v2
    assert v2.text_hash != v1.text_hash
    assert v2.created_by == privacy_officer
    old = PurposeVersion.objects.get(pk=v1.pk)
    assert old.description_ja == v1.description_ja
    assert [v.version for v in purpose.versions.order_by("version")] == [1, 2]


def test_saving_the_same_text_makes_no_new_version():
    # given a purpose
    purpose = Purpose.objects.get(code="analytics")
    v1 = purpose.current_version
    # when it is "revised" with identical text (surrounding spaces aside)
    same = purpose_revised(purpose, title_ja=f" {v1.title_ja} ")
    # then it stays at version 1
    assert same == v1
    assert purpose.versions.count() == 1


def test_changing_the_legal_basis_is_a_new_version_too():
    # given the analytics purpose on legitimate interest
    purpose = Purpose.objects.get(code="analytics")
    # when its basis becomes consent
    v2 = purpose_revised(purpose, legal_basis="consent")
    # then the basis is versioned with the text
    purpose.refresh_from_db()
    assert (v2.version, v2.legal_basis, purpose.legal_basis) == (2, "consent", "consent")


def test_a_purpose_without_english_text_is_refused_and_nothing_is_written():
    # given a new purpose with an empty English title
    # when it is created
    with pytest.raises(ValidationError) as exc:
        services.purpose_create(
            code="survey",
            category="analytics",
            legal_basis="consent",
            title_ja="アンケート",
            title_en=" ",
            description_ja="アンケートの集計のため。",
            description_en="To tally surveys.",
        )
    # then a Japanese error and no purpose
    assert "必須" in str(exc.value)
    assert not Purpose.objects.filter(code="survey").exists()


def test_a_version_cannot_be_changed_or_deleted_through_the_orm():
    # given a stored version
    version = Purpose.objects.get(code="analytics").current_version
    # when it is edited or deleted
    version.title_ja = "書き換え"
    # then the ORM refuses both
    with pytest.raises(LedgerImmutableError):
        version.save()
    with pytest.raises(LedgerImmutableError):
        version.delete()


def test_the_database_refuses_to_rewrite_a_version():
    # given a stored version
    version = Purpose.objects.get(code="analytics").current_version
    # when raw SQL tries to rewrite it
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE consent_purposeversion SET title_ja = 'x' WHERE id = %s", [version.pk])
    # then the text is intact
    assert PurposeVersion.objects.get(pk=version.pk).title_ja == version.title_ja
