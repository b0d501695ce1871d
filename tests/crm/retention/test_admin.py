"""The retention admin: the officer previews, places holds and starts runs; others are refused."""

from __future__ import annotations

import pytest
from django.urls import reverse

from crm.retention.models import LegalHold, RetentionRun
from tests.crm.retention.conftest import jst, set_activity

pytestmark = pytest.mark.django_db


def test_officer_sees_the_dry_run_masked(client, privacy_officer, customer, make_policy, frozen_now):
    # given a due customer and a policy
    set_activity(customer, jst(2020, 1, 1))
    policy = make_policy()
    client.force_login(privacy_officer)
    # when the officer opens the policy
    page = client.get(reverse("admin:crm_retentionpolicy_change", args=[policy.pk]))
    # then the page shows today's count and a masked sample, never the clear name
    text = page.content.decode()
    assert page.status_code == 200
    assert "処理対象: <strong>1</strong> 人" in text and "山*" in text
    assert "山田" not in text and "taro.yamada@example.com" not in text


def test_staff_cannot_open_policies_or_holds(client, owner, make_policy):
    # given a team lead (staff role)
    policy = make_policy()
    client.force_login(owner)
    # then policies, holds and runs are refused
    assert client.get(reverse("admin:crm_retentionpolicy_change", args=[policy.pk])).status_code == 403
    assert client.get(reverse("admin:crm_legalhold_changelist")).status_code == 403
    assert client.get(reverse("admin:crm_retentionrun_changelist")).status_code == 403


def test_officer_places_a_hold_on_several_customers(client, privacy_officer, customer, foreign_customer):
    # given the officer on the add page
    client.force_login(privacy_officer)
    url = reverse("admin:crm_legalhold_add")
    # when they enter two customer ids
    page = client.post(
        url,
        {
            "customer_ids": f"{customer.pk}, {foreign_customer.pk}",
            "reason": "litigation",
            "reference": "令和8年(ワ)第1号",
        },
    )
    # then both are held, placed by the officer
    assert page.status_code == 302
    assert set(LegalHold.objects.values_list("customer_id", "placed_by_id")) == {
        (customer.pk, privacy_officer.pk),
        (foreign_customer.pk, privacy_officer.pk),
    }


def test_bad_hold_input_writes_nothing(client, privacy_officer, customer):
    client.force_login(privacy_officer)
    url = reverse("admin:crm_legalhold_add")
    # when the ids are not numbers, then the form says so in Japanese
    page = client.post(url, {"customer_ids": "山田さん", "reason": "litigation"})
    assert page.status_code == 200 and "顧客IDは数字で入力してください。" in page.content.decode()
    # when one id does not exist, then nothing is written and the message says why
    page = client.post(url, {"customer_ids": f"{customer.pk} 999999", "reason": "litigation"}, follow=True)
    assert "存在しない顧客" in page.content.decode()
    assert not LegalHold.objects.exists()


def test_officer_starts_a_run_and_sees_it(client, privacy_officer, auditor, customer, make_policy):
    # given a policy and a customer to walk over (the run's batches are not sent in this test)
    policy = make_policy()
    client.force_login(privacy_officer)
    # when the officer runs it from the list
    client.post(
        reverse("admin:crm_retentionpolicy_changelist"),
        {"action": "run_now", "_selected_action": [policy.pk]},
    )
    # then a run is recorded and visible with its progress, to the officer and to the auditor
    run = RetentionRun.objects.get(policy=policy)
    assert run.started_by == privacy_officer
    assert client.get(reverse("admin:crm_retentionrun_changelist")).status_code == 200
    client.force_login(auditor)
    page = client.get(reverse("admin:crm_retentionrun_change", args=[run.pk]))
    assert page.status_code == 200 and "進捗" in page.content.decode()
    # and a second start while it runs is refused with a message
    client.force_login(privacy_officer)
    page = client.post(
        reverse("admin:crm_retentionpolicy_changelist"),
        {"action": "run_now", "_selected_action": [policy.pk]},
        follow=True,
    )
    assert "実行中" in page.content.decode() and RetentionRun.objects.filter(policy=policy).count() == 1


def test_auditor_cannot_start_runs(client, auditor, make_policy):
    policy = make_policy()
    client.force_login(auditor)
    client.post(
        reverse("admin:crm_retentionpolicy_changelist"),
        {"action": "run_now", "_selected_action": [policy.pk]},
    )
    assert not RetentionRun.objects.exists()


def test_the_schedule_is_editable_by_the_officer(client, privacy_officer):
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="crm.retention.run_due_policies")
    client.force_login(privacy_officer)
    assert (
        client.get(reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])).status_code == 200
    )
