"""Key rotation throughput: `manage.py rotate_keys` (raw tokens, keyset batches) against the naive baseline
(load every customer through the ORM and save it again under the new key).

Runs in a throw-away database (Django's test database machinery: `test_<your database>`), never in yours:
rotation rewrites every token, and the keys used here are generated for the run.

    DJANGO_ENV=test DATABASE_URL=postgres://… python bench/rotate_keys.py --rows 5000

Prints one line per method: rows, tokens, seconds, rows per second.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from cryptography.fernet import Fernet  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.utils import override_settings, setup_test_environment  # noqa: E402

from crm import services  # noqa: E402
from crm.checks import CANARY_VALUE  # noqa: E402
from crm.models import Customer, EncryptionCanary, Team  # noqa: E402


def seed(rows: int) -> None:
    """One customer through the service, copied `rows - 1` times in SQL (same tokens: the work per token of
    a rotation does not depend on the value)."""
    team = Team.objects.create(code="bench", name="ベンチ")
    services.customer_create(
        team=team,
        family_name="山田",
        given_name="太郎",
        family_name_kana="ヤマダ",
        given_name_kana="タロウ",
        email="taro@example.com",
        phone="090-1234-5678",
        postal_code="100-0005",
        address="千代田区丸の内1-1-1",
        birth_date="1985-04-01",
        notes="平日夕方に電話希望",
        acquisition_note="展示会で名刺交換",
        collection_channel=Customer.Channel.WEB_FORM,
    )
    qn = connection.ops.quote_name
    columns = [
        f.column for f in Customer._meta.concrete_fields if f.name not in {"id", "member_no", "external_id"}
    ]
    cols = ", ".join(qn(c) for c in columns)
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO crm_customer ({cols}) SELECT {cols} FROM crm_customer, generate_series(1, %s)",
            [rows - 1],
        )
        cur.execute("ANALYZE crm_customer")


def tokens_per_row() -> int:
    c = Customer.objects.first()
    return sum(
        1
        for f in Customer._meta.concrete_fields
        if f.__class__.__name__.startswith("Encrypted") and getattr(c, f.name) not in (None, "")
    )


def orm_baseline(batch: int = 2000) -> None:
    """What rotation looks like without the command: every row decrypted into Python and saved again."""
    last = 0
    while True:
        with transaction.atomic():
            chunk = list(Customer.objects.filter(pk__gt=last).order_by("pk")[:batch])
            for customer in chunk:
                customer.save()
        if not chunk:
            return
        last = chunk[-1].pk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5000)
    rows = parser.parse_args().rows

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        old, new, newer = (Fernet.generate_key().decode() for _ in range(3))
        with override_settings(FIELD_ENCRYPTION_KEYS=[old]):
            EncryptionCanary.objects.filter(pk=1).update(token=CANARY_VALUE)
            seed(rows)
            per_row = tokens_per_row()
        results = []
        with override_settings(FIELD_ENCRYPTION_KEYS=[new, old]):
            start = time.perf_counter()
            call_command("rotate_keys", stdout=io.StringIO())
            results.append(("rotate_keys (raw SQL, batches of 2000)", time.perf_counter() - start))
        with override_settings(FIELD_ENCRYPTION_KEYS=[newer, new]):
            start = time.perf_counter()
            orm_baseline()
            results.append(("baseline: ORM load + save per row", time.perf_counter() - start))
        print(f"rows: {rows:,}   encrypted tokens per row: {per_row}   tokens: {rows * per_row:,}")
        for label, seconds in results:
            print(f"{label:<42} {seconds:8.2f} s   {rows / seconds:10,.0f} rows/s")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
