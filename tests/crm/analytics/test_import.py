"""Purchase import: bad rows reported by line and the valid ones kept (or the whole file refused), customers
created in the importing team, one audit entry per batch, a re-import changing nothing."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from crm.analytics import imports, services
from crm.analytics.models import PurchaseImport
from crm.models import AuditEntry, Customer, Purchase
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db
JST = ZoneInfo("Asia/Tokyo")

GOOD_AND_BAD = (
    "external_id,purchased_at,amount,quantity,category,channel\n"
    "C-1,2026-04-01,1000,1,books,web_form\n"  # line 2
    "C-1,2026-04-01T10:00:00,2500.50,2,food,\n"  # 3
    "C-1,2026-04-01T10:00:00,2500.50,2,food,\n"  # 4: the same purchase twice in a file is two purchases
    "C-2,2026-04-05T10:00:00+00:00,300,,books,store_pos\n"  # 5
    "C-3,2026-02-30,100,1,x,\n"  # 6: no such day
    "C-4,2026-04-05,abc,1,x,\n"  # 7
    ",2026-04-05,100,1,x,\n"  # 8
    "C-5,2026-04-05,100,0,x,bogus\n"  # 9: two errors
    "C-6,2026-04-05,100\n"  # 10: too few columns
    "C-7,2026-13-01T10:00,100,1,,\n"  # 11
    "123456789018,2026-04-05,100,1,,\n"  # 12: a My Number (check digit valid) as the external id
    "C-8,2026-04-05,100,abc,,\n"  # 13: a quantity that is no number
)


def _import(team, text: str, *, all_or_nothing: bool = False) -> PurchaseImport:
    batch = PurchaseImport.objects.create(team=team, file_name="t.csv", all_or_nothing=all_or_nothing)
    return services.purchase_import_run(batch_id=batch.pk, stream=io.BytesIO(text.encode()))


def test_bad_rows_are_reported_by_line_and_valid_rows_kept(team):
    # given a team with customer C-2 already, and a file with four good and seven bad rows
    existing = CustomerFactory(team=team, external_id="C-2")

    # when it is imported
    batch = _import(team, GOOD_AND_BAD)

    # then the good rows are purchases, the bad ones reported with their line, field and reason
    assert batch.status == PurchaseImport.Status.DONE
    assert (batch.rows_total, batch.rows_inserted, batch.rows_invalid) == (12, 4, 8)
    assert {(e["line"], e["field"], e["code"]) for e in batch.errors} == {
        (6, "purchased_at", "invalid_datetime"),
        (7, "amount", "invalid_amount"),
        (8, "external_id", "required"),
        (9, "quantity", "invalid_quantity"),
        (9, "channel", "invalid_choice"),
        (10, "", "columns"),
        (11, "purchased_at", "invalid_datetime"),
        (12, "external_id", "my_number"),
        (13, "quantity", "invalid_quantity"),
    }
    # C-1 is created in the importing team, C-2 is the existing customer, no one else is created
    created = Customer.objects.get(team=team, external_id="C-1")
    assert created.collection_channel == Customer.Channel.IMPORT and created.status == Customer.Status.ACTIVE
    assert batch.customers_created == 1
    assert Customer.objects.filter(external_id__in=["C-3", "C-4", "C-5", "C-6", "C-7"]).count() == 0
    rows = {
        (p.customer_id, p.purchased_at, p.amount, p.quantity, p.category, p.channel)
        for p in Purchase.objects.filter(team=team)
    }
    assert rows == {
        (created.pk, dt.datetime(2026, 4, 1, 0, 0, tzinfo=JST), Decimal("1000.00"), 1, "books", "web_form"),
        (created.pk, dt.datetime(2026, 4, 1, 10, 0, tzinfo=JST), Decimal("2500.50"), 2, "food", "import"),
        (existing.pk, dt.datetime(2026, 4, 5, 19, 0, tzinfo=JST), Decimal("300.00"), 1, "books", "store_pos"),
    }
    assert Purchase.objects.filter(team=team).count() == 4  # the repeated line stays two purchases


def test_my_numbers_are_refused_grouped_full_width_or_padded_as_the_forms_refuse_them(team):
    # given My Numbers written as the project's validator still recognises them, and near misses
    batch = _import(
        team,
        "external_id,purchased_at,amount,category\n"
        "1234-5678-9018,2026-04-01,100,\n"  # 2: grouped by dashes
        "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19\uff10\uff11\uff18,2026-04-01,100,\n"  # 3
        " 123456789018 ,2026-04-01,100,\n"  # 4: padded (values are trimmed)
        "C-1,2026-04-01,100,1234 5678 9018\n"  # 5: in the category
        "C-1,2026-04-01,100,123456789017\n"  # 6: twelve digits, wrong check digit: kept
        "C-123456789018-X,2026-04-01,100,\n",  # 7: inside a longer id
    )
    assert {(e["line"], e["field"], e["code"]) for e in batch.errors} == {
        (2, "external_id", "my_number"),
        (3, "external_id", "my_number"),
        (4, "external_id", "my_number"),
        (5, "category", "my_number"),
        (7, "external_id", "my_number"),
    }
    assert batch.rows_inserted == 1


def test_offsets_and_month_ends_are_read_as_written(team):
    # given instants with a Z, a negative and a positive offset, none (Japan time), and month ends
    text = (
        "external_id,purchased_at,amount\n"
        "T-1,2026-04-05T10:00:00Z,1\n"
        "T-1,2026-04-05T10:00:00-05:00,2\n"
        "T-1,2026-04-05T10:00:00.5+0930,3\n"
        "T-1,2026-04-05 10:00,4\n"
        "T-1,2024-02-29,5\n"
        "T-1,2026-02-29,6\n"  # line 7: not a leap year
        "T-1,2026-04-31,7\n"  # line 8: April has 30 days
        "T-1,2026-12-31,8\n"
    )
    batch = _import(team, text)
    utc = dt.UTC
    got = {int(p.amount): p.purchased_at for p in Purchase.objects.filter(team=team)}
    assert got == {
        1: dt.datetime(2026, 4, 5, 10, tzinfo=utc),
        2: dt.datetime(2026, 4, 5, 15, tzinfo=utc),
        3: dt.datetime(2026, 4, 5, 0, 30, 0, 500000, tzinfo=utc),
        4: dt.datetime(2026, 4, 5, 1, tzinfo=utc),
        5: dt.datetime(2024, 2, 28, 15, tzinfo=utc),
        8: dt.datetime(2026, 12, 30, 15, tzinfo=utc),
    }
    assert [(e["line"], e["code"]) for e in batch.errors] == [
        (7, "invalid_datetime"),
        (8, "invalid_datetime"),
    ]


def test_a_reimport_changes_nothing(team):
    # given a file imported once
    _import(team, GOOD_AND_BAD)
    before = (Customer.objects.count(), sorted(Purchase.objects.values_list("pk", "import_key")))

    # when the same file is imported again
    again = _import(team, GOOD_AND_BAD)

    # then no customer and no purchase is added; the valid rows count as already there
    assert (Customer.objects.count(), sorted(Purchase.objects.values_list("pk", "import_key"))) == before
    assert (again.rows_inserted, again.rows_duplicate, again.customers_created) == (0, 4, 0)


def test_another_team_importing_the_same_file_gets_its_own_customers(team, other_team):
    _import(team, GOOD_AND_BAD)
    batch = _import(other_team, GOOD_AND_BAD)
    assert (batch.rows_inserted, batch.customers_created) == (4, 2)
    assert Customer.objects.filter(external_id="C-1").count() == 2


def test_all_or_nothing_refuses_the_whole_file(team):
    batch = _import(team, GOOD_AND_BAD, all_or_nothing=True)
    assert batch.status == PurchaseImport.Status.REFUSED
    assert batch.rows_invalid == 8 and len(batch.errors) == 9
    assert Purchase.objects.count() == 0 and Customer.objects.filter(external_id="C-1").count() == 0


def test_a_file_without_a_required_column_is_refused(team):
    batch = _import(team, "external_id,amount\nC-1,100\n")
    assert batch.status == PurchaseImport.Status.REFUSED
    assert batch.errors == [{"line": 1, "field": "purchased_at", "code": "missing_column"}]
    assert Purchase.objects.count() == 0


def test_columns_in_any_order_and_a_quoted_line_break_fall_back_line_by_line(team):
    # given optional columns first, a quoted comma, and a quoted line break (a record over two lines)
    text = 'channel,amount,external_id,purchased_at\napp,100,"C,1",2026-04-01\napp,5,"C\n2",2026-04-01\n'
    batch = _import(team, text)
    # then the first row is kept with its comma; the broken record is refused by line, not the whole file
    assert Customer.objects.filter(team=team, external_id="C,1").exists()
    assert batch.rows_inserted == 1 and batch.rows_invalid == 2
    assert [e["line"] for e in batch.errors] == [3, 4]


def test_each_batch_writes_one_audit_entry_per_model_with_ids_and_counts_only(team):
    batch = _import(team, GOOD_AND_BAD)
    entries = AuditEntry.objects.filter(object_pk=f"purchase-import:{batch.pk}")
    assert entries.count() == 2
    for entry in entries:
        data = entry.additional_data["purchase_import"]
        assert set(data) == {"batch", "team", "count", "id_ranges"}
        assert "C-1" not in str(entry.additional_data) and "C-1" not in entry.object_repr
    purchase_entry = entries.get(content_type__model="purchase")
    assert purchase_entry.additional_data["purchase_import"]["count"] == 4


def test_large_files_are_read_in_chunks(team, monkeypatch):
    # given chunks of 64 bytes (the file is never read whole) and a file of 200 rows with one bad
    monkeypatch.setattr(imports, "CHUNK_BYTES", 64)
    lines = [f"X-{i % 17},2026-03-{1 + i % 28:02d}T09:{i % 60:02d},{100 + i}" for i in range(200)]
    lines[150] = "X-1,yesterday,100"
    batch = _import(team, "external_id,purchased_at,amount\n" + "\n".join(lines) + "\n")
    assert (batch.rows_total, batch.rows_inserted, batch.rows_invalid) == (200, 199, 1)
    assert batch.errors == [{"line": 152, "field": "purchased_at", "code": "invalid_datetime"}]
    assert batch.bytes_read == len("external_id,purchased_at,amount\n" + "\n".join(lines) + "\n")


def test_a_chunk_lost_to_the_connection_fails_the_import_instead_of_falling_back(team, monkeypatch):
    # given a connection that drops during the chunk's CSV COPY (the line-by-line fallback's COPY would work)
    copy = psycopg.Cursor.copy

    def dropping(self, statement, *args, **kwargs):
        if "FORMAT csv" in str(statement):
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return copy(self, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "copy", dropping)
    batch = PurchaseImport.objects.create(team=team, file_name="t.csv")

    # when the file is imported, the error is the connection's, not a bad row
    with pytest.raises(psycopg.OperationalError):
        services.purchase_import_run(batch_id=batch.pk, stream=io.BytesIO(GOOD_AND_BAD.encode()))

    # then the batch failed and nothing was staged line by line into purchases
    batch.refresh_from_db()
    assert batch.status == PurchaseImport.Status.FAILED
    assert batch.errors == [] and Purchase.objects.count() == 0


def test_the_command_imports_a_file(team, tmp_path, capsys):
    path = tmp_path / "p.csv"
    path.write_text("external_id,purchased_at,amount\nC-9,2026-04-01,100\n", encoding="utf-8")
    call_command("import_purchases", str(path), "--team", str(team.pk))
    assert '"inserted": 1' in capsys.readouterr().out
    assert Purchase.objects.filter(customer__external_id="C-9", team=team).count() == 1


def test_inserted_ids_are_answered_as_ranges_across_blocks_and_gaps():
    # given ids with gaps, one run crossing a block's edge (65,536) and a block of its own
    ids = [1, 2, 3, 5, 65534, 65535, 65536, 65537, 70000, 200000]
    with connection.cursor() as cursor:
        cursor.execute(services._ranges_of("SELECT unnest(%s::bigint[]) AS id"), [ids])
        ranges = services.ranges_merged(cursor.fetchall())
    # then each run of consecutive ids is one range, in order
    assert ranges == [[1, 3], [5, 5], [65534, 65537], [70000, 70000], [200000, 200000]]
