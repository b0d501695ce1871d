"""Expired disclosure packages are removed by the retention engine: the policy of scope 「完了した開示等請求の
開示データ」 (record age N days, counted from each package's download deadline), not by code of its own."""

from __future__ import annotations

import datetime as dt

import pytest

from consent.disclosure import services
from consent.disclosure.models import DisclosurePackage
from consent.requests.models import DataSubjectRequest, RequestState
from crm.models import AuditEntry
from crm.permissions import ROLE_PRIVACY, ROLE_SUPPORT
from crm.retention import selectors as retention_selectors
from crm.retention import services as retention
from crm.retention.models import RetentionPolicy, RetentionRun
from tests.factories import CustomerFactory, UserFactory

pytestmark = pytest.mark.django_db

JST = dt.timezone(dt.timedelta(hours=9))


@pytest.fixture(autouse=True)
def _package_dir(settings, tmp_path):
    settings.DISCLOSURE_PACKAGE_DIR = str(tmp_path / "packages")


def _built(team, handler, expires_at: dt.datetime) -> DisclosurePackage:
    received = dt.datetime(2026, 1, 5, 10, 0, tzinfo=JST)
    dsr = DataSubjectRequest.objects.create(
        kind="disclosure",
        channel="email",
        received_at=received,
        customer=CustomerFactory(team=team),
        handler=handler,
    )
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(
        identity_verified_at=received, state=RequestState.IN_PROGRESS
    )
    package = services.disclosure_package_order(
        request=DataSubjectRequest.objects.get(pk=dsr.pk), actor=handler, enqueue=False
    )
    services.disclosure_package_build(package_id=package.pk)
    DisclosurePackage.objects.filter(pk=package.pk).update(expires_at=expires_at)
    package.refresh_from_db()
    return package


def test_the_retention_policy_removes_packages_n_days_past_their_deadline(
    team, django_capture_on_commit_callbacks
):
    # given the seeded policy (record age 90 days, erase) and two packages: one whose download deadline was
    # 2026-02-01 10:00 JST, one whose deadline was 2026-02-02 00:00 JST
    handler = UserFactory(username="h", roles=[ROLE_SUPPORT])
    officer = UserFactory(username="p", roles=[ROLE_PRIVACY])
    old = _built(team, handler, dt.datetime(2026, 2, 1, 10, 0, tzinfo=JST))
    young = _built(team, handler, dt.datetime(2026, 2, 2, 0, 0, tzinfo=JST))
    policy = RetentionPolicy.objects.get(scope="dsar_packages")
    assert (policy.trigger, policy.days, policy.action) == ("record_age", 90, "erase")
    # run on 2026-05-03 10:00 JST: the cutoff is 90 days before that day, 2026-02-02 00:00 JST
    as_of = dt.datetime(2026, 5, 3, 10, 0, tzinfo=JST)
    # when the privacy officer previews it, then one package is due
    assert retention_selectors.retention_preview(user=officer, policy=policy, as_of=as_of).affected == 1
    # when it runs (the one path of every record scope: a resumable slice of batches)
    with django_capture_on_commit_callbacks(execute=True):
        started = retention.retention_run_start(policy=policy, as_of=as_of, actor=officer, enqueue=False)
        run = retention.retention_run_to_completion(run=started)
    # then the older package is expired and its file gone; the other is untouched
    assert (run.status, run.erased) == (RetentionRun.Status.COMPLETED, 1)
    old.refresh_from_db()
    young.refresh_from_db()
    assert old.state == DisclosurePackage.State.EXPIRED and old.file_name == "" and old.removed_at
    assert old.sha256 and old.contents["rows"]  # the record of what was disclosed stays
    assert young.state == DisclosurePackage.State.READY
    files = sorted(p.name for p in services.package_dir().iterdir())
    assert files == [young.file_name]
    # and the removal is one audit entry by ids and count
    entry = AuditEntry.objects.get(object_pk=f"disclosure-packages-expired:{old.pk}-{old.pk}")
    assert entry.additional_data["disclosure_packages_expired"] == {"ids": [old.pk], "count": 1}
    # and a second run finds nothing left to do
    with django_capture_on_commit_callbacks(execute=True):
        again = retention.retention_run_to_completion(
            run=retention.retention_run_start(policy=policy, as_of=as_of, enqueue=False)
        )
    assert (again.status, again.erased) == (RetentionRun.Status.COMPLETED, 0)


def test_a_package_policy_with_another_trigger_or_action_fails_with_its_reason(db):
    # given the packages' policy set to anonymise, which means nothing for a file
    policy = RetentionPolicy.objects.get(scope="dsar_packages")
    policy.action = "anonymise"
    policy.save()
    # when it runs, then the run fails and says why
    run = retention.retention_run_start(policy=policy)
    assert run.status == RetentionRun.Status.FAILED and "消去" in run.note
    # and set to a customer trigger, it fails naming the one trigger packages know
    policy.action, policy.trigger = "erase", "inactive"
    policy.save()
    run = retention.retention_run_start(policy=policy)
    assert run.status == RetentionRun.Status.FAILED and "記録の作成からN日経過" in run.note


def test_a_package_run_stopped_between_batches_resumes_from_its_cursor(
    team, django_capture_on_commit_callbacks
):
    # given three packages past the policy's period and a policy removing one per batch
    handler = UserFactory(username="h", roles=[ROLE_SUPPORT])
    packages = [_built(team, handler, dt.datetime(2026, 1, 10, 10, 0, tzinfo=JST)) for _ in range(3)]
    policy = RetentionPolicy.objects.get(scope="dsar_packages")
    policy.batch_size = 1
    policy.save()
    as_of = dt.datetime(2026, 5, 3, 10, 0, tzinfo=JST)
    run = retention.retention_run_start(policy=policy, as_of=as_of, enqueue=False)
    sl = run.slices.get()
    # when one batch is done and the worker stops before the next
    with django_capture_on_commit_callbacks(execute=True):
        cursor = retention.retention_slice_advance(slice_id=sl.pk, expected_cursor=0, enqueue=False)
    # then one package is expired, a repeated message for that batch does nothing
    assert cursor == 1
    assert DisclosurePackage.objects.filter(state=DisclosurePackage.State.EXPIRED).count() == 1
    assert retention.retention_slice_advance(slice_id=sl.pk, expected_cursor=0, enqueue=False) is None
    # and the run resumed from its cursor removes the rest and completes
    with django_capture_on_commit_callbacks(execute=True):
        done = retention.retention_run_to_completion(run=run)
    assert (done.status, done.erased) == (RetentionRun.Status.COMPLETED, 3)
    assert {p.pk for p in packages} == set(
        DisclosurePackage.objects.filter(state=DisclosurePackage.State.EXPIRED).values_list("pk", flat=True)
    )
    assert list(services.package_dir().iterdir()) == []
