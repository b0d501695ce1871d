"""Realistic Japanese demo customers (Faker ja_JP): names with matching kana, addresses by prefecture."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator
from typing import Any

from faker import Faker

from crm.prefectures import PREFECTURE_CODES, PREFECTURES

TLDS = ["com", "jp", "net"]
CHANNELS = ["web_form", "app", "store_pos", "event", "business_card", "partner", "import"]


# Teams the bulk seed adds when fewer than it needs exist (seed_demo's four teams are used first).
EXTRA_TEAMS = [
    ("nagoya-sales", "名古屋営業部"),
    ("fukuoka-sales", "福岡営業部"),
    ("sapporo-sales", "札幌営業部"),
    ("sendai-sales", "仙台営業部"),
    ("hiroshima-sales", "広島営業部"),
    ("corporate-sales", "法人営業部"),
    ("store-ops", "店舗運営部"),
    ("app-growth", "アプリ推進部"),
]


def demo_customer_fields(fake: Faker, rng: random.Random, n: int) -> dict[str, Any]:
    """Field values for one demo customer; `n` makes e-mail and member number unique.

    The values are what a person would type (phone in national format); the services and the bulk seed
    normalise them the same way (Customer.normalise). Activity dates are consistent: collected, then active
    up to `last_activity_at`; about 4% have left (退会), and a long tail has been inactive for years,
    so that retention policies have something to find.
    """
    family, family_kana, family_roman = fake.last_name_pair()
    female = rng.random() < 0.5
    given, given_kana, given_roman = fake.first_name_female_pair() if female else fake.first_name_male_pair()
    prefecture = rng.choice(PREFECTURES)
    mobile = rng.random() < 0.8
    phone = (
        f"0{rng.choice('789')}0-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
        if mobile
        else f"03-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
    )
    now = dt.datetime.now(dt.UTC)
    collected_at = now - dt.timedelta(days=rng.randint(0, 3650), seconds=rng.randint(0, 86399))
    last_activity_at = collected_at + (now - collected_at) * rng.random() ** 0.5
    closed = rng.random() < 0.04
    fields: dict[str, Any] = {
        "family_name": family,
        "given_name": given,
        "family_name_kana": family_kana,
        "given_name_kana": given_kana,
        "email": f"{given_roman.lower()}.{family_roman.lower()}{n}@example.{rng.choice(TLDS)}",
        "phone": phone,
        "postal_code": fake.zipcode(),
        "prefecture": PREFECTURE_CODES[prefecture],
        "address": f"{fake.city()}{fake.town()}{fake.chome()}{fake.ban()}{fake.gou()}",
        "birth_date": dt.date(1940, 1, 1) + dt.timedelta(days=rng.randint(0, 365 * 65)),
        "gender": "female" if female else "male",
        "member_no": f"M{n:09d}",
        "collection_channel": rng.choice(CHANNELS),
        "collected_at": collected_at,
        "last_activity_at": last_activity_at,
        "preferences": {"newsletter": rng.random() < 0.5},
    }
    if closed:
        fields["status"] = "closed"
        fields["closed_at"] = last_activity_at
    return fields


def demo_customers(count: int, seed: int = 42, start: int = 1) -> Iterator[dict[str, Any]]:
    """`count` customers numbered from `start`; the same (seed, start) always gives the same people."""
    fake = Faker("ja_JP")
    fake.seed_instance(seed + start)
    rng = random.Random(seed + start)
    for n in range(start, start + count):
        yield demo_customer_fields(fake, rng, n)


# Demo data of the apps above crm (consent ledger, special-care records …): each registers a seeder in its
# AppConfig.ready(), so seed_demo fills every admin page without crm importing those apps. A seeder is called
# with the demo's privacy officer (the actor of what it writes) and must be safe to run again.
DEMO_SEEDERS: list[Callable[..., None]] = []


def register_demo_seeder(seeder: Callable[..., None]) -> None:
    """Called by a higher app's AppConfig.ready(): `seeder(actor=…)` runs at the end of seed_demo."""
    if seeder not in DEMO_SEEDERS:
        DEMO_SEEDERS.append(seeder)
