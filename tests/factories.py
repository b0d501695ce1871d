"""factory_boy factories shared by the test suite."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from crm import services
from crm.analytics.models import ClvFit, ClvScore, RfmRun, RfmScore
from crm.models import Customer, Team

# The standing `customer` fixture's (tests/conftest.py) phone as stored (E.164) and as entered, and its names
# in kanji and kana: values a page must never show in clear.
STANDING_CUSTOMER_PHONE_AND_NAMES = ["+819012345678", "090-1234-5678", "山田", "太郎", "ヤマダ", "タロウ"]


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"team-{n}")
    name = factory.Sequence(lambda n: f"チーム{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@staff.example.jp")
    is_staff = True
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def roles(self, create: bool, extracted: list[str] | None, **kwargs: object) -> None:
        if create and extracted:
            self.groups.add(*Group.objects.filter(name__in=extracted))
        if create:
            self.save()


class CustomerFactory(factory.django.DjangoModelFactory):
    """Customers go through the service, so blind indexes and validation are as in production."""

    class Meta:
        model = Customer

    team = factory.SubFactory(TeamFactory)
    family_name = "山田"
    given_name = factory.Sequence(lambda n: f"太郎{n}")
    family_name_kana = "ヤマダ"
    given_name_kana = "タロウ"
    email = factory.Sequence(lambda n: f"taro{n}@example.com")
    phone = factory.Sequence(lambda n: f"090-{1000 + n % 9000:04d}-{5678:04d}")
    postal_code = "100-0005"
    prefecture = "13"
    address = "千代田区丸の内1-1-1"
    member_no = factory.Sequence(lambda n: f"F{n:09d}")  # never the fixtures' M… numbers
    collection_channel = Customer.Channel.WEB_FORM

    @classmethod
    def _create(cls, model_class: type[Customer], *args: object, **kwargs: object) -> Customer:
        return services.customer_create(**kwargs)  # type: ignore[arg-type]


def rfm_score_for(
    customer: Customer, *, run: RfmRun, segment: str = RfmScore.Segment.POTENTIAL, **inputs: object
) -> RfmScore:
    """An RFM score about `customer` in `run` (in the run's slot); the inputs and scores not given are
    placeholders (1)."""
    values = dict.fromkeys(("recency_days", "frequency", "monetary", "r_score", "f_score", "m_score"), 1)
    return RfmScore.objects.create(
        run=run, slot=run.slot, customer=customer, segment=segment, **(values | inputs)
    )


def clv_score_for(
    customer: Customer, *, fit: ClvFit, clv: float | Decimal = 1, p_alive: float = 1, **inputs: object
) -> ClvScore:
    """A CLV prediction about `customer` in `fit`; the inputs not given are placeholders (1)."""
    values = dict.fromkeys(
        ("frequency", "recency", "age", "monetary", "expected_purchases", "expected_spend"), 1
    )
    return ClvScore.objects.create(fit=fit, customer=customer, clv=clv, p_alive=p_alive, **(values | inputs))


def analytics_scores_for(customer: Customer, on: dt.date) -> None:
    """An RFM score and a CLV prediction about `customer` (profiling results: what the disclosure package
    shows and erasure removes), each in a run or fit of its own."""
    rfm_score_for(
        customer,
        run=RfmRun.objects.create(as_of=on),
        recency_days=3,
        monetary=Decimal("1980"),
        r_score=5,
        m_score=2,
    )
    fit = ClvFit.objects.create(calibration_end=on, r=0.24, alpha=4.4, a=0.79, b=2.4, log_likelihood=-1.0)
    clv_score_for(
        customer, fit=fit, clv=Decimal("2500"), p_alive=1.0, frequency=0, recency=0.0, monetary=Decimal("0"),
        expected_purchases=0.4, expected_spend=Decimal("1980"),
    )  # fmt: skip
