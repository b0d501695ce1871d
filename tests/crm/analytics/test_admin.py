"""The analytics admin: the upload goes through the service and a Celery task; scores are listed behind the
gate, masked without the PII permission; explanations and reports open for those who may read them."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from crm.analytics import services
from crm.analytics.eligibility import eligible_customers
from crm.analytics.models import PurchaseImport
from crm.analytics.tasks import purchase_import_task
from crm.models import Purchase
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db
JST = ZoneInfo("Asia/Tokyo")
CSV = b"external_id,purchased_at,amount,category\nA-1,2026-04-01,1000,books\nA-1,2026-04-02,x,food\n"


def test_a_team_member_uploads_a_file_and_the_task_imports_it(
    client, teammate, team, other_team, settings, tmp_path, django_capture_on_commit_callbacks
):
    # given a member of `team` (staff role) on the upload page, which offers only their team
    settings.ANALYTICS_IMPORT_DIR = str(tmp_path)
    client.force_login(teammate)
    page = client.get(reverse("admin:crm_purchaseimport_add"))
    assert list(page.context["adminform"].form.fields["team"].queryset) == [team]

    # when they upload a file
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        answer = client.post(
            reverse("admin:crm_purchaseimport_add"),
            {"team": team.pk, "upload": SimpleUploadedFile("p.csv", CSV, "text/csv"), "all_or_nothing": ""},
        )

    # then a batch waits with the file, its task is enqueued after commit; the task imports it once
    assert answer.status_code == 302
    batch = PurchaseImport.objects.get()
    assert (batch.team, batch.created_by, batch.status) == (team, teammate, PurchaseImport.Status.PENDING)
    assert len(callbacks) == 1
    assert purchase_import_task(batch.pk) == "done"
    assert purchase_import_task(batch.pk) == "missing"  # run twice: the file is gone, nothing changes
    batch.refresh_from_db()
    assert (batch.rows_inserted, batch.rows_invalid) == (1, 1)
    assert not services.import_file_path(batch.pk).exists()
    # and its page shows the refused line with its reason
    detail = client.get(reverse("admin:crm_purchaseimport_change", args=[batch.pk]))
    assert "金額として読めません" in detail.content.decode()


def test_an_upload_into_another_team_is_refused(client, teammate, other_team, settings, tmp_path):
    settings.ANALYTICS_IMPORT_DIR = str(tmp_path)
    client.force_login(teammate)
    answer = client.post(
        reverse("admin:crm_purchaseimport_add"),
        {"team": other_team.pk, "upload": SimpleUploadedFile("p.csv", CSV, "text/csv")},
    )
    assert answer.status_code == 200 and "team" in answer.context["adminform"].form.errors
    assert not PurchaseImport.objects.exists()


def _scored(team):
    customer = CustomerFactory(team=team)
    for day in (1, 5):
        Purchase.objects.create(
            customer=customer,
            team=team,
            amount=1234,
            category="books" if day == 1 else "food",
            channel="web_form",
            purchased_at=dt.datetime(2026, 4, day, 12, tzinfo=JST),
        )
    services.rfm_compute(eligible=eligible_customers(), as_of=dt.date(2026, 4, 30))
    return customer


def test_scores_are_masked_without_the_pii_permission_and_clear_with_it(
    client, teammate, privacy_officer, team
):
    customer = _scored(team)
    client.force_login(teammate)
    masked = client.get(reverse("admin:crm_rfmscore_changelist"))
    rows = masked.context["cl"].result_list
    assert [r.customer_id for r in rows] == [customer.pk]
    assert "1234" not in masked.content.decode().replace(",", "")

    client.force_login(privacy_officer)
    clear = client.get(reverse("admin:crm_rfmscore_changelist"))
    assert "2468" in clear.content.decode().replace(",", "")
    score = clear.context["cl"].result_list[0]
    detail = client.get(reverse("admin:crm_rfmscore_change", args=[score.pk])).content.decode()
    assert "F（購買日数）" in detail and "スコアごとの値の範囲" in detail


def test_reports_open_to_those_who_read_scores_in_clear(client, teammate, privacy_officer, team):
    _scored(team)
    client.force_login(privacy_officer)
    fairness = client.get(reverse("admin:crm_rfmscore_fairness"))
    assert fairness.status_code == 200 and "標準化平均差" in fairness.content.decode()
    assert client.get(reverse("admin:crm_rfmscore_crosssell")).status_code == 200
    client.force_login(teammate)
    assert client.get(reverse("admin:crm_rfmscore_fairness")).status_code == 403
