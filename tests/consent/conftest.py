"""Fixtures of the consent tests. Purposes come from the seed migration (consent/0003_purposes)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from consent import services
from consent.models import ConsentEvent
from consent.requests import services as request_services
from crm.permissions import ROLE_PRIVACY, ROLE_SUPPORT
from tests.factories import CustomerFactory, UserFactory

JST = ZoneInfo("Asia/Tokyo")


def at(text: str) -> dt.datetime:
    """'2026-04-01 10:00' in Japan time."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=JST)


def purpose_post(purpose, **changes) -> dict:
    """The purpose admin's change form as posted unchanged (its current version's texts, the versions
    inline), with `changes` over it."""
    v1 = purpose.current_version
    return {
        "category": purpose.category,
        "legal_basis": purpose.legal_basis,
        "is_published": "on",
        "display_order": purpose.display_order,
        "title_ja": v1.title_ja,
        "title_en": v1.title_en,
        "description_ja": v1.description_ja,
        "description_en": v1.description_en,
        "basis_change_reason": "",
        "versions-TOTAL_FORMS": "1",
        "versions-INITIAL_FORMS": "1",
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
        "versions-0-id": v1.pk,
        "versions-0-purpose": purpose.pk,
        **changes,
    }


def purpose_revised(purpose, **changes):
    """services.purpose_revise with the purpose's current texts and `changes` (texts, basis, actor …)."""
    current = purpose.current_version
    texts = {
        name: getattr(current, name) for name in ("title_ja", "title_en", "description_ja", "description_en")
    }
    return services.purpose_revise(purpose=purpose, **(texts | changes))


def phone_request(
    handler, *, received_at, kind="disclosure", jurisdiction="appi", email="taro.yamada@example.com", **kwargs
):
    """A request taken by phone by `handler`, who handles it (a request to the address `email`)."""
    return request_services.request_create(
        kind=kind,
        channel="phone",
        received_at=received_at,
        jurisdiction=jurisdiction,
        requester_email=email,
        actor=handler,
        handler=handler,
        **kwargs,
    )


@pytest.fixture
def grant():
    """Record an opt-in consent on a web form for `customer` (or a visitor) — keyword shorthand."""

    def _grant(customer=None, code="marketing_email", when=None, **kwargs):
        return services.consent_record(
            purpose_code=code,
            action=ConsentEvent.Action.GRANT,
            method=kwargs.pop("method", ConsentEvent.Method.OPT_IN),
            channel=kwargs.pop("channel", ConsentEvent.Channel.WEB_FORM),
            customer=customer,
            occurred_at=when,
            **kwargs,
        )

    return _grant


@pytest.fixture
def withdraw():
    def _withdraw(customer=None, code="marketing_email", when=None, **kwargs):
        return services.consent_record(
            purpose_code=code,
            action=ConsentEvent.Action.WITHDRAW,
            method=ConsentEvent.Method.OPT_OUT,
            channel=kwargs.pop("channel", ConsentEvent.Channel.WEB_FORM),
            customer=customer,
            occurred_at=when,
            **kwargs,
        )

    return _withdraw


@pytest.fixture
def handler(db):
    """A member of the request desk (開示等請求対応)."""
    return UserFactory(username="desk-handler", roles=[ROLE_SUPPORT])


@pytest.fixture
def officer(db):
    """The privacy officer (個人情報保護管理者) of the consent and provision tests."""
    return UserFactory(username="officer", roles=[ROLE_PRIVACY])


@pytest.fixture
def teammate_customer(team):
    """A second customer of `team`."""
    return CustomerFactory(team=team, member_no="M-CONSENT-2")


@pytest.fixture(autouse=True)
def _distinct_member_numbers():
    """The standing `customer` fixture uses member number M000000001; start the factory's sequence past it
    so that `foreign_customer` never collides with it whatever order fixtures are created in."""
    CustomerFactory.reset_sequence(1000)
