"""The Celery tasks called directly (the real worker is exercised in test_worker.py)."""

from __future__ import annotations

import pytest

from crm.models import Customer, CustomerEvent
from crm.retention import services
from crm.retention.models import RetentionPolicy, RetentionRun, RetentionRunSlice
from crm.retention.services import runs
from crm.retention.tasks import (
    retention_resume_stalled,
    retention_run_batch,
    retention_run_due_policies,
    retention_run_policy,
)
from tests.crm.retention.conftest import add_history, jst, set_activity
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """Batch messages the services would send after commit (captured instead of going to the broker)."""
    messages: list[tuple[int, int]] = []
    monkeypatch.setattr(runs, "_enqueue_slices", lambda items: messages.extend(items))
    return messages


def test_beat_entry_starts_enabled_policies_once(team, make_policy, sent, django_capture_on_commit_callbacks):
    # given an enabled and a disabled policy, and a customer to walk over
    CustomerFactory(team=team)
    on = make_policy(enabled=True)
    make_policy(enabled=False)
    # when beat fires twice while the first run is still going
    with django_capture_on_commit_callbacks(execute=True):
        first = retention_run_due_policies()
        second = retention_run_due_policies()
    # then only the enabled policy runs, once, and its first batch messages were sent after commit
    assert first == [RetentionRun.objects.get(policy=on).pk] and second == []
    assert sorted(sent) == sorted(RetentionRunSlice.objects.values_list("pk", "cursor"))


def test_run_policy_task_is_a_no_op_while_running(team, make_policy, sent):
    CustomerFactory(team=team)
    policy = make_policy()
    assert retention_run_policy(policy.pk) is not None
    assert retention_run_policy(policy.pk) is None
    assert retention_run_policy(999999) is None


def test_batch_task_twice_with_the_same_cursor(team, make_policy, sent, settings):
    # given a one-slice run over a due customer with events, batch messages captured
    settings.RETENTION_RUN_SLICES = 1
    c = set_activity(CustomerFactory(team=team), jst(2020, 1, 1))
    add_history(c, events=2)
    run = services.retention_run_start(policy=make_policy(action=RetentionPolicy.Action.ERASE), enqueue=False)
    sl = RetentionRunSlice.objects.get(run=run)
    # when the task is delivered twice
    retention_run_batch(sl.pk, sl.cursor)
    retention_run_batch(sl.pk, sl.cursor)
    # then the customer was erased once and the run completed
    run.refresh_from_db()
    assert (run.status, run.erased) == ("completed", 1)
    assert not Customer.objects.exists() and not CustomerEvent.objects.exists()


def test_batch_task_failure_fails_the_run_with_a_code_only(team, make_policy, sent, monkeypatch):
    # given a run whose batch raises an unexpected error
    CustomerFactory(team=team)
    run = services.retention_run_start(policy=make_policy(), enqueue=False)
    sl = run.slices.first()

    def boom(**kwargs):
        raise ValueError("顧客 山田太郎 の値")  # a message that must not reach the run record

    monkeypatch.setattr(services, "retention_slice_advance", boom)
    # when
    with pytest.raises(ValueError):
        retention_run_batch(sl.pk, sl.cursor)
    # then the run is failed with the error's type only
    run.refresh_from_db()
    assert run.status == RetentionRun.Status.FAILED and "ValueError" in run.note and "山田" not in run.note


def test_resume_task_counts_stalled_slices(team, make_policy, sent):
    CustomerFactory(team=team)
    services.retention_run_start(policy=make_policy(), enqueue=False)
    assert retention_resume_stalled(0) == RetentionRunSlice.objects.count()
    assert retention_resume_stalled(3600) == 0


def test_behavioural_anonymise_unlinks_events(team, make_policy, frozen_now):
    # given "inactive 3 years → anonymise behavioural data"
    c = set_activity(CustomerFactory(team=team, device_id="dev-9"), jst(2020, 1, 1))
    add_history(c, events=2)
    policy = make_policy(scope=RetentionPolicy.Scope.BEHAVIOURAL, action=RetentionPolicy.Action.ANONYMISE)
    # when
    run = services.retention_run_to_completion(run=services.retention_run_start(policy=policy, enqueue=False))
    # then the events stay, unlinked and without visitor ids; the device id is gone; the profile stays
    assert set(CustomerEvent.objects.values_list("customer_id", "visitor_id")) == {(None, "")}
    c.refresh_from_db()
    assert c.device_id == "" and c.email and c.status == "active" and run.anonymised == 1
