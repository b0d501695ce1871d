"""The request desk's own records: an answered request, its verification, messages and completion record are
kept REQUEST_RECORDS_KEEP_YEARS after it was completed or rejected (the completion record surviving the
person's erasure until then), then removed by the retention policy of scope 「完了した開示等請求とその記録」
(a record scope of the one retention mechanism), on worked dates."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from consent import rules
from consent.disclosure.models import DisclosurePackage
from consent.requests import services
from consent.requests.models import (
    DataSubjectRequest,
    IdentityVerification,
    RequestCompletion,
    RequestMessage,
)
from crm.models import AuditEntry, Customer
from crm.retention import services as retention
from crm.retention.models import RetentionPolicy, RetentionRun
from crm.retention.selectors import retention_preview
from tests.consent.conftest import at, phone_request
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_the_keeping_period_on_worked_dates():
    # completed 2026-04-01 10:00 JST: kept through 2029-04-01
    assert rules.request_records_keep_until(at("2026-04-01 10:00"), years=3) == dt.date(2029, 4, 1)
    # completed 2026-03-31 16:30 UTC, which is already 2026-04-01 in Japan: the JST day counts
    late = dt.datetime(2026, 3, 31, 16, 30, tzinfo=dt.UTC)
    assert rules.request_records_keep_until(late, years=3) == dt.date(2029, 4, 1)
    # completed on 29 February 2028: kept through 28 February 2031
    assert rules.request_records_keep_until(at("2028-02-29 09:00"), years=3) == dt.date(2031, 2, 28)
    # the policy's cutoff on a day: closed before it, the period ended before that day
    assert rules.request_records_closed_before(dt.date(2029, 4, 2), years=3) == at("2026-04-02 00:00")
    assert rules.request_records_closed_before(dt.date(2031, 3, 1), years=3) == at("2028-03-01 00:00")
    assert rules.request_records_closed_before(dt.date(2031, 2, 28), years=3) == at("2028-02-28 00:00")
    # on 29 February 2032, a request closed on 28 February 2029 (kept through 28 February 2032) is due
    assert rules.request_records_closed_before(dt.date(2032, 2, 29), years=3) == at("2029-03-01 00:00")
    # consistency: for every closing day of two years, "closed before the cutoff" == "kept through a day
    # before the run's day"
    run_day = dt.date(2032, 2, 29)
    cutoff = rules.request_records_closed_before(run_day, years=3)
    day = dt.date(2028, 6, 1)
    while day < dt.date(2030, 6, 1):
        closed = dt.datetime.combine(day, dt.time(12), tzinfo=rules.JST)
        assert (closed < cutoff) == (rules.request_records_keep_until(closed, years=3) < run_day), day
        day += dt.timedelta(days=1)


def _answered(handler, customer, when: str, email: str = "taro.yamada@example.com") -> DataSubjectRequest:
    """A correction request received, verified, answered and completed at `when` (JST)."""
    with time_machine.travel(at(when), tick=False):
        request = phone_request(
            handler, kind="correction", received_at=at(when) - dt.timedelta(days=3), email=email
        )
        services.request_link_customer(request=request, customer=customer, actor=handler)
        services.request_verify_identity(
            request=request, actor=handler, method="id_document", evidence_reference="R-1"
        )
        services.request_correct(request=request, actor=handler, changes={"given_name": "次郎"})
        services.request_complete(request=request, actor=handler, note="訂正しました。")
    request.refresh_from_db()
    return request


def _run(policy, as_of):
    started = retention.retention_run_start(policy=policy, as_of=as_of, enqueue=False)
    return retention.retention_run_to_completion(run=started)


def test_answered_requests_are_kept_through_their_period_then_removed_by_the_policy(
    handler, officer, customer, team, django_capture_on_commit_callbacks
):
    # given a request completed 2026-04-01 10:00 JST, whose customer was then erased
    old = _answered(handler, customer, "2026-04-01 10:00")
    retention.customer_erase(customer_ids=[customer.pk], reason="policy", actor=None)
    assert not Customer.objects.filter(pk=old.customer_id).exists()
    # the completion record survives the erasure, naming the person by keyed hash only
    record = RequestCompletion.objects.get(request=old)
    assert record.subject_hash and "次郎" not in str(record.summary)
    # and a request completed a day later, and one still open
    other = CustomerFactory(team=team)
    young = _answered(handler, other, "2026-04-02 10:00", email="b@example.com")
    open_request = phone_request(handler, received_at=at("2026-01-05 10:00"), email="c@example.com")
    # the seeded policy: disabled, period ended + 0 days, erase
    policy = RetentionPolicy.objects.get(scope=RetentionPolicy.Scope.REQUEST_RECORDS)
    assert (policy.trigger, policy.days, policy.action, policy.enabled) == ("period_ended", 0, "erase", False)
    # when it runs on the last day of the old request's period (2029-04-01 23:00 JST), nothing goes
    last_day = at("2029-04-01 23:00")
    assert retention_preview(user=officer, policy=policy, as_of=last_day).affected == 0
    assert _run(policy, last_day).erased == 0
    assert RequestCompletion.objects.filter(request=old).exists()
    # the day after (2029-04-02 00:30 JST), the old request goes with its records; the others stay
    next_day = at("2029-04-02 00:30")
    assert retention_preview(user=officer, policy=policy, as_of=next_day).affected == 1
    with django_capture_on_commit_callbacks(execute=True):
        done = _run(policy, next_day)
    assert (done.status, done.erased) == (RetentionRun.Status.COMPLETED, 1)
    assert not DataSubjectRequest.objects.filter(pk=old.pk).exists()
    for model in (RequestCompletion, IdentityVerification, RequestMessage):
        assert not model.objects.filter(request_id=old.pk).exists(), model
    assert set(DataSubjectRequest.objects.values_list("pk", flat=True)) == {young.pk, open_request.pk}
    # and the removal is audited by ids, naming nobody
    gone = AuditEntry.objects.filter(
        content_type__model="requestcompletion", object_pk=str(record.pk), action=AuditEntry.Action.DELETE
    )
    assert gone.exists() and "taro" not in str(list(gone.values_list("changes", flat=True)))
    # and a day later the younger one goes too
    assert _run(policy, at("2029-04-03 00:30")).erased == 1
    assert list(DataSubjectRequest.objects.values_list("pk", flat=True)) == [open_request.pk]


def test_the_period_is_a_setting(handler, customer, settings):
    # given the period set to five years
    settings.REQUEST_RECORDS_KEEP_YEARS = 5
    request = _answered(handler, customer, "2026-04-01 10:00")
    policy = RetentionPolicy.objects.get(scope=RetentionPolicy.Scope.REQUEST_RECORDS)
    # then three years later it is kept, five years and a day later removed
    assert _run(policy, at("2029-04-02 00:30")).erased == 0
    assert _run(policy, at("2031-04-02 00:30")).erased == 1
    assert not DataSubjectRequest.objects.filter(pk=request.pk).exists()


def test_a_request_whose_package_is_still_downloadable_waits_and_a_wrong_trigger_fails(handler, customer):
    request = _answered(handler, customer, "2026-04-01 10:00")
    DisclosurePackage.objects.create(
        request=request, state=DisclosurePackage.State.READY, language="ja", expires_at=at("2026-04-30 10:00")
    )
    policy = RetentionPolicy.objects.get(scope=RetentionPolicy.Scope.REQUEST_RECORDS)
    assert _run(policy, at("2029-04-02 00:30")).erased == 0
    assert DataSubjectRequest.objects.filter(pk=request.pk).exists()
    policy.trigger = "record_age"
    policy.save()
    run = retention.retention_run_start(policy=policy, as_of=at("2029-04-02 00:30"))
    assert run.status == RetentionRun.Status.FAILED and "保存期間の満了" in run.note
