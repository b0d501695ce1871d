"""The bulk seed (manage.py seed_customers): what it writes is what the ORM would have written."""

from __future__ import annotations

import base64
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count

from crm.crypto import DecryptionError, normalise_phone
from crm.demo import demo_customers
from crm.models import AuditEntry, Customer, CustomerEvent, Purchase, Team
from crm.selectors import customer_list, customer_search_q
from crm.validators import normalise_postal_code
from tests.marks import transactional_all_apps

SEED = 5


def _generated(count: int, batch: int, start: int = 1) -> dict[str, dict]:
    """The values the command generated, by member number (each batch is generated from its own start)."""
    out: dict[str, dict] = {}
    for first in range(start, start + count, batch):
        for values in demo_customers(min(batch, start + count - first), seed=SEED, start=first):
            out[values["member_no"]] = values
    return out


def _seed(**opts: object) -> None:
    defaults = {"count": 12, "teams": 2, "batch": 5, "workers": 0, "seed": SEED}
    call_command("seed_customers", **{**defaults, **opts})


@pytest.mark.django_db
def test_seeded_rows_decrypt_to_the_generated_values():
    # given the generator's values for 12 customers in batches of 5
    expected = _generated(12, 5)
    # when they are seeded through COPY
    _seed()
    # then every row reads back through the ORM (decrypting) to exactly those values, normalised as the
    # service would store them
    rows = {c.member_no: c for c in Customer.objects.all()}
    assert set(rows) == set(expected)
    for member_no, values in expected.items():
        c = rows[member_no]
        assert (c.family_name, c.given_name) == (values["family_name"], values["given_name"])
        assert (c.family_name_kana, c.given_name_kana) == (
            values["family_name_kana"],
            values["given_name_kana"],
        )
        assert c.email == values["email"].casefold()
        assert c.phone == normalise_phone(values["phone"])
        assert c.phone.startswith("+81")
        assert c.postal_code == normalise_postal_code(values["postal_code"])
        assert c.address == values["address"]
        assert c.birth_date == values["birth_date"]
        assert c.prefecture == values["prefecture"]
        assert c.status == values.get("status", Customer.Status.ACTIVE)


@pytest.mark.django_db
def test_seeded_blind_indexes_equal_what_the_model_computes():
    # given seeded customers
    _seed(count=6)
    # when each is loaded through the ORM and its blind indexes recomputed from the clear values
    for customer in Customer.objects.all():
        stored = (customer.email_bidx, customer.phone_bidx, customer.name_bidx, customer.kana_bidx)
        customer.refresh_blind_indexes()
        # then the seed stored exactly those hashes
        assert stored == (customer.email_bidx, customer.phone_bidx, customer.name_bidx, customer.kana_bidx)
        assert all(stored)


@pytest.mark.django_db
def test_seeded_customer_is_found_by_exact_search(privacy_officer):
    # given a seeded customer and the values a person would type (phone in national format, kana in hiragana)
    _seed()
    values = _generated(12, 5)["M000000007"]
    wanted = Customer.objects.get(member_no="M000000007")
    terms = {
        "email": values["email"].upper(),
        "phone": values["phone"],
        "name": f"{values['family_name']} {values['given_name']}",
        "kana": f"{values['family_name_kana']}{values['given_name_kana']}",
        "member_no": "M000000007",
    }
    for kind, term in terms.items():
        # when searching through the selector (the privacy officer sees every team)
        found = customer_list(user=privacy_officer, search=term)
        # then the customer is among the results
        assert wanted in found, kind
    assert Customer.objects.filter(customer_search_q(values["email"])).get() == wanted


@pytest.mark.django_db
def test_search_of_seeded_customer_is_refused_to_a_user_outside_its_team(team, outsider, owner):
    # given customers seeded on `team` (the first team), which the outsider does not belong to
    _seed(teams=1)
    values = _generated(12, 5)["M000000003"]
    # when the outsider searches for one by e-mail
    found = customer_list(user=outsider, search=values["email"])
    # then nothing is returned, while the team's owner finds the customer
    assert list(found) == []
    assert customer_list(user=owner, search=values["email"]).count() == 1


@pytest.mark.django_db
def test_seed_writes_one_summary_audit_entry_without_personal_values():
    # given an empty audit trail for customers
    before = AuditEntry.objects.count()
    # when 12 customers are seeded
    _seed()
    # then exactly one entry describes the load, with counts and ids but no personal value
    entries = AuditEntry.objects.filter(additional_data__command="seed_customers")
    assert entries.count() == 1
    entry = entries.get()
    assert entry.action == AuditEntry.Action.CREATE
    assert entry.additional_data["customers"] == 12
    ids = list(Customer.objects.order_by("id").values_list("id", flat=True))
    assert entry.additional_data["id_range"] == [ids[0], ids[-1]]
    text = json.dumps(
        [entry.object_repr, entry.object_pk, entry.changes, entry.additional_data], ensure_ascii=False
    )
    for values in _generated(12, 5).values():
        for field in ("family_name", "email", "phone", "member_no", "address"):
            assert values[field] not in text
    # and no per-row entries (auditlog does not see COPY; teams created on the way are audited normally)
    customer_entries = AuditEntry.objects.filter(content_type__model="customer")
    assert customer_entries.count() == 1
    assert AuditEntry.objects.count() - before == 1 + 2  # the summary + two new teams


@pytest.mark.django_db
def test_seed_continues_after_the_highest_member_number(team):
    # given 5 customers already seeded
    _seed(count=5, teams=1)
    # when 4 more are seeded
    _seed(count=4, teams=1)
    # then member numbers continue without collision, on the existing team
    numbers = sorted(Customer.objects.values_list("member_no", flat=True))
    assert numbers == [f"M{n:09d}" for n in range(1, 10)]
    assert set(Customer.objects.values_list("team", flat=True)) == {team.pk}


@pytest.mark.django_db
def test_seed_generates_purchases_and_events_per_customer():
    # given / when 12 customers with on average 2 purchases and 3 events each
    _seed(purchases_per_customer=2, events_per_customer=3)
    # then purchases and events belong to seeded customers, within their activity period
    assert Purchase.objects.count() > 0
    assert CustomerEvent.objects.count() > 0
    per_customer = Purchase.objects.values("customer").annotate(n=Count("id"))
    assert max(row["n"] for row in per_customer) <= 4
    for p in Purchase.objects.select_related("customer")[:20]:
        assert p.team_id == p.customer.team_id
        assert p.customer.collected_at <= p.purchased_at <= p.customer.last_activity_at
    kinds = set(CustomerEvent.objects.values_list("kind", flat=True))
    assert kinds <= set(CustomerEvent.Kind.values)


@pytest.mark.django_db
def test_seed_is_refused_in_production(settings):
    # given production settings
    settings.PRODUCTION = True
    # when / then the command refuses and writes nothing
    with pytest.raises(CommandError, match="本番環境"):
        _seed()
    assert not Customer.objects.exists()
    assert not Team.objects.exists()


@pytest.mark.django_db
def test_seed_rejects_a_count_of_zero():
    # given / when / then a meaningless count is refused with a Japanese message
    with pytest.raises(CommandError, match="1以上"):
        _seed(count=0)


# Worker processes have their own connections, so the teams must be committed: a transactional test.
# `available_apps` makes the flush TRUNCATE … CASCADE (django-auditlog's swapped-out LogEntry table still
# references auth_user; django-auditlog issue #804) and re-run post_migrate (role groups).
@transactional_all_apps()
def test_seed_with_worker_processes_writes_every_batch_once():
    # given two worker processes, each with its own connection and COPY
    # when 23 customers are seeded in batches of 5
    _seed(count=23, teams=3, batch=5, workers=2)
    # then all 23 arrive exactly once, spread over 3 teams, with the generated values
    expected = _generated(23, 5)
    rows = {c.member_no: c for c in Customer.objects.all()}
    assert set(rows) == set(expected)
    assert all(rows[m].email == v["email"] for m, v in expected.items())
    assert Customer.objects.values("team").distinct().count() <= 3
    assert AuditEntry.objects.filter(additional_data__customers=23).count() == 1


@pytest.mark.django_db
def test_seeded_tokens_are_bound_to_their_column():
    # given customers loaded through COPY (each value encrypted by its field's get_prep_value)
    _seed(count=3, batch=3)
    customer = Customer.objects.order_by("pk").first()
    # when a seeded row's raw e-mail and phone tokens are read
    with connection.cursor() as cur:
        cur.execute("SELECT email, phone FROM crm_customer WHERE id = %s", [customer.pk])
        email, phone = cur.fetchone()
    # then they are in the bound format, and swapping them makes the row unreadable instead of mixing values
    assert {base64.urlsafe_b64decode(t)[:1] for t in (email, phone)} == {b"\x03"}
    with connection.cursor() as cur:
        cur.execute("UPDATE crm_customer SET email = phone, phone = email WHERE id = %s", [customer.pk])
    with pytest.raises(DecryptionError, match=r"crm\.Customer\.email"):
        Customer.objects.get(pk=customer.pk)
