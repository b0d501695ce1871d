"""factory_boy factories shared by the test suite."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from crm import services
from crm.models import Customer, Team


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
