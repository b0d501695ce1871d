"""Triggers and actions of the retention engine on worked examples, with the clock frozen at
2026-11-26 12:00 JST (conftest.NOW)."""

from __future__ import annotations

import datetime as dt

import pytest

from crm.models import Customer, CustomerEvent, Purchase
from crm.retention import selectors, services
from crm.retention.models import LegalHold, RetentionPolicy, RetentionRun, Tombstone
from tests.crm.retention.conftest import NOW, add_history, jst, set_activity
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

Scope, Trigger, Action = RetentionPolicy.Scope, RetentionPolicy.Trigger, RetentionPolicy.Action
# A policy erasing marketing preferences 30 days after the marketing consent is withdrawn.
MARKETING_ERASED_30_DAYS_AFTER_WITHDRAWAL = dict(
    scope=Scope.MARKETING,
    trigger=Trigger.CONSENT_WITHDRAWN,
    days=30,
    consent_purpose="marketing_email",
    action=Action.ERASE,
)


def run_policy(policy: RetentionPolicy, as_of: dt.datetime = NOW) -> RetentionRun:
    run = services.retention_run_start(policy=policy, as_of=as_of, enqueue=False)
    return services.retention_run_to_completion(run=run)


def test_inactive_three_years_anonymises_only_past_the_cutoff(team, make_policy, frozen_now):
    # given the default "inactive 3 years → anonymise" policy; cutoff 2023-11-27 00:00 JST
    policy = make_policy(trigger=Trigger.INACTIVE, days=1095, action=Action.ANONYMISE)
    old = set_activity(CustomerFactory(team=team), jst(2023, 11, 26, 23, 59))
    recent = set_activity(CustomerFactory(team=team), jst(2023, 11, 27, 0, 0))
    never = set_activity(CustomerFactory(team=team), None, created_at=jst(2020, 1, 1))
    # when the policy runs
    run = run_policy(policy)
    # then the two past the period are anonymised, the other untouched
    states = dict(Customer.objects.values_list("pk", "status"))
    assert states[old.pk] == Customer.Status.ANONYMISED
    assert states[never.pk] == Customer.Status.ANONYMISED
    assert states[recent.pk] == Customer.Status.ACTIVE
    assert (run.status, run.examined, run.anonymised, run.skipped_hold) == ("completed", 3, 2, 0)


def test_account_closed_one_year_erases(team, make_policy, frozen_now):
    # given "closed 365 days ago → erase"; cutoff 2025-11-26 00:00 JST
    policy = make_policy(trigger=Trigger.ACCOUNT_CLOSED, days=365, action=Action.ERASE)
    gone = set_activity(CustomerFactory(team=team), NOW, closed_at=jst(2025, 11, 25, 18), status="closed")
    kept = set_activity(CustomerFactory(team=team), NOW, closed_at=jst(2025, 11, 26, 9), status="closed")
    open_ = set_activity(CustomerFactory(team=team), jst(2010, 1, 1))
    add_history(gone, purchases=2, events=3)
    # when
    run = run_policy(policy)
    # then only the customer closed before the cutoff is erased; purchases survive unlinked
    assert set(Customer.objects.values_list("pk", flat=True)) == {kept.pk, open_.pk}
    assert not CustomerEvent.objects.exists()
    assert Purchase.objects.count() == 2 and not Purchase.objects.filter(customer__isnull=False).exists()
    assert run.erased == 1


def test_record_age_on_customers_uses_collection_date(team, make_policy, frozen_now):
    # given "record older than 10 years → erase" (cutoff 2016-11-28 00:00 JST)
    policy = make_policy(trigger=Trigger.RECORD_AGE, days=3650, action=Action.ERASE)
    a = CustomerFactory(team=team, collected_at=jst(2016, 11, 27, 23))
    b = CustomerFactory(team=team, collected_at=jst(2016, 11, 28, 0))
    # when
    run_policy(policy)
    # then
    assert list(Customer.objects.values_list("pk", flat=True)) == [b.pk]
    assert not Customer.objects.filter(pk=a.pk).exists()


def test_behavioural_record_age_deletes_only_old_events(team, make_policy, frozen_now):
    # given "behavioural events older than 730 days → erase" (cutoff 2024-11-26 00:00 JST)
    policy = make_policy(scope=Scope.BEHAVIOURAL, trigger=Trigger.RECORD_AGE, days=730, action=Action.ERASE)
    c = CustomerFactory(team=team, device_id="dev-123")
    add_history(c, purchases=1, events=2, at=jst(2024, 11, 25, 23, 59))  # 11-25 23:59 and 11-26 23:59
    # when
    run = run_policy(policy)
    # then the event of 2024-11-25 is gone, the one of 2024-11-26 stays; the customer is untouched
    assert list(CustomerEvent.objects.values_list("occurred_at", flat=True)) == [jst(2024, 11, 26, 23, 59)]
    c.refresh_from_db()
    assert c.device_id == "dev-123" and c.status == Customer.Status.ACTIVE
    assert run.erased == 1
    # and a second run finds nothing left to do
    assert run_policy(policy).erased == 0


def test_consent_withdrawn_erases_marketing_data(team, make_policy, frozen_now, monkeypatch):
    # given the consent contract: withdrawn_since(purpose, days) → customer ids (stubbed here; the real app is
    # exercised by test_consent_trigger_with_the_consent_app)
    withdrawn = CustomerFactory(team=team, preferences={"newsletter": True, "interests": ["wine"]})
    other = CustomerFactory(team=team, preferences={"newsletter": True})
    calls = []

    def withdrawn_since(purpose_code, days, as_of=None):
        calls.append((purpose_code, days))
        return Customer.objects.filter(pk=withdrawn.pk).values("pk")

    monkeypatch.setattr(selectors, "consent_withdrawn_customer_ids", withdrawn_since)
    policy = make_policy(**MARKETING_ERASED_30_DAYS_AFTER_WITHDRAWAL)
    # when
    run = run_policy(policy)
    # then the withdrawn customer's marketing preferences are erased, nothing else of theirs
    withdrawn.refresh_from_db()
    other.refresh_from_db()
    assert withdrawn.preferences == {} and withdrawn.email and withdrawn.status == "active"
    assert other.preferences == {"newsletter": True}
    assert ("marketing_email", 30) in calls and run.erased == 1
    assert Tombstone.objects.filter(scope=Scope.MARKETING, action=Action.ERASE).count() == 1


def test_consent_trigger_with_the_consent_app(team, make_policy, privacy_officer):
    # given the real consent ledger
    from consent import services as consent_services
    from consent.models import ConsentEvent

    def record(customer, action, when):
        consent_services.consent_record(
            purpose_code="marketing_email",
            action=action,
            method=ConsentEvent.Method.OPT_IN if action == "grant" else ConsentEvent.Method.OPT_OUT,
            channel=ConsentEvent.Channel.WEB_FORM,
            customer=customer,
            occurred_at=when,
        )

    # a customer who withdrew on 2026-10-20 (37 days before NOW), one who withdrew on 2026-11-20 (6 days),
    # and one who withdrew then granted again
    old, recent, regranted = (CustomerFactory(team=team, preferences={"newsletter": True}) for _ in range(3))
    for c in (old, recent, regranted):
        record(c, "grant", jst(2026, 1, 10, 10))
    record(old, "withdraw", jst(2026, 10, 20, 10))
    record(recent, "withdraw", jst(2026, 11, 20, 10))
    record(regranted, "withdraw", jst(2026, 10, 20, 10))
    record(regranted, "grant", jst(2026, 11, 1, 10))
    policy = make_policy(**MARKETING_ERASED_30_DAYS_AFTER_WITHDRAWAL)
    # when the officer previews and the policy runs as of 2026-11-26 12:00 JST
    preview = selectors.retention_preview(user=privacy_officer, policy=policy, as_of=NOW)
    run = run_policy(policy)
    # then only the customer who withdrew more than 30 days ago loses their marketing data
    assert (preview.affected, run.erased) == (1, 1)
    prefs = dict(Customer.objects.values_list("pk", "preferences"))
    assert prefs == {old.pk: {}, recent.pk: {"newsletter": True}, regranted.pk: {"newsletter": True}}
    # and a policy naming an unknown purpose fails its run with the consent app's reason, doing nothing
    policy.consent_purpose = "marketing_emial"
    policy.save()
    failed = services.retention_run_start(policy=policy, enqueue=False)
    assert failed.status == RetentionRun.Status.FAILED and "marketing_emial" in failed.note


def test_consent_trigger_without_the_consent_app_fails_the_run_clearly(make_policy, monkeypatch):
    # given no app has registered the source of the "consent withdrawn" trigger (consent not installed)
    from crm.retention import participants

    monkeypatch.setattr(participants, "_withdrawn_source", [])
    policy = make_policy(**MARKETING_ERASED_30_DAYS_AFTER_WITHDRAWAL)
    # when
    run = services.retention_run_start(policy=policy, enqueue=False)
    # then the run is closed as failed with a Japanese reason, nothing done
    assert run.status == RetentionRun.Status.FAILED and "同意台帳" in run.note


def test_anonymised_row_content_per_class(team, make_policy, frozen_now):
    # given a customer with every kind of value, purchases and events
    c = CustomerFactory(
        team=team,
        birth_date=dt.date(1985, 6, 15),
        address="東京都千代田区丸の内1-1-1",
        prefecture="",
        gender="female",
        notes="電話で問い合わせ",
        app_user_id="app-1",
        device_id="dev-1",
        pos_card_no="1234567890",
        external_id="EXT-1",
        preferences={"newsletter": True},
        acquisition_note="店頭で取得",
    )
    set_activity(c, jst(2020, 1, 1))
    add_history(c, purchases=2, events=2)
    policy = make_policy(action=Action.ANONYMISE)
    # when
    run_policy(policy)
    # then direct identifiers and their blind indexes are gone
    c = Customer.objects.get(pk=c.pk)
    for name in (
        "family_name",
        "given_name",
        "family_name_kana",
        "given_name_kana",
        "email",
        "phone",
        "postal_code",
        "address",
        "notes",
    ):
        assert getattr(c, name) == "", name
    assert c.birth_date is None
    assert (c.email_bidx, c.phone_bidx, c.name_bidx, c.kana_bidx) == ("", "", "", "")
    # quasi-identifiers are gone
    assert c.member_no is None and c.external_id is None
    assert (c.app_user_id, c.device_id, c.pos_card_no) == ("", "", "")
    # quasi-identifiers generalised: birth date → age band on 2026-11-26, address → prefecture
    assert c.age_band == "40代"
    assert c.prefecture == "13"
    # structured attributes stay, free text and free-form attributes go
    assert c.gender == "female" and c.preferences == {} and c.acquisition_note == ""
    assert c.status == Customer.Status.ANONYMISED
    # purchases and events stay for analytics, unlinked, events without their visitor id
    assert Purchase.objects.count() == 2 and not Purchase.objects.filter(customer__isnull=False).exists()
    assert CustomerEvent.objects.count() == 2
    assert set(CustomerEvent.objects.values_list("customer_id", "visitor_id")) == {(None, "")}


def test_pseudonymise_keeps_links_and_quasi_identifiers(team, make_policy, frozen_now):
    # given
    c = set_activity(CustomerFactory(team=team, birth_date=dt.date(1990, 1, 1)), jst(2020, 1, 1))
    add_history(c, purchases=1, events=1)
    policy = make_policy(action=Action.PSEUDONYMISE)
    # when
    run = run_policy(policy)
    # then names and contacts are gone but the record stays analysable under its id
    c = Customer.objects.get(pk=c.pk)
    assert (c.family_name, c.email, c.phone, c.name_bidx) == ("", "", "", "")
    assert c.member_no and c.age_band == "30代"
    assert Purchase.objects.get().customer_id == c.pk and CustomerEvent.objects.get().customer_id == c.pk
    assert run.pseudonymised == 1 and run_policy(policy).pseudonymised == 0


def test_held_customer_is_skipped_and_reported(team, make_policy, frozen_now, privacy_officer):
    # given three inactive customers: one held (litigation), one whose hold expired, one released
    held, expired, released = (set_activity(CustomerFactory(team=team), jst(2019, 1, 1)) for _ in range(3))
    services.legal_hold_place(customer_ids=[held.pk], reason="litigation", placed_by=privacy_officer)
    services.legal_hold_place(
        customer_ids=[expired.pk],
        reason="tax_records",
        placed_by=privacy_officer,
        until=NOW + dt.timedelta(days=1),
    )
    LegalHold.objects.filter(customer=expired).update(until=NOW - dt.timedelta(seconds=1))
    services.legal_hold_place(customer_ids=[released.pk], reason="dsar", placed_by=privacy_officer)
    services.legal_hold_release(
        holds=LegalHold.objects.filter(customer=released), released_by=privacy_officer
    )
    policy = make_policy(action=Action.ERASE)
    # when
    run = run_policy(policy)
    # then the held customer is untouched and counted; the others are erased
    assert list(Customer.objects.values_list("pk", flat=True)) == [held.pk]
    assert (run.erased, run.skipped_hold) == (2, 1)
    # and the record of the ended holds survives without pointing at anybody
    assert LegalHold.objects.filter(customer__isnull=True).count() == 2


def test_request_desk_erasure_respects_holds(team, customer, privacy_officer, support_agent):
    # given a held customer and a free one
    free = CustomerFactory(team=team)
    services.legal_hold_place(customer_ids=[customer.pk], reason="incident", placed_by=privacy_officer)
    # when the request desk erases both
    out = services.customer_erase(customer_ids=[customer.pk, free.pk], reason="dsar:17", actor=support_agent)
    # then the held one is refused and named, the other erased whole
    assert out.held == [customer.pk] and out.acted == [free.pk]
    assert (
        Customer.objects.filter(pk=customer.pk).exists() and not Customer.objects.filter(pk=free.pk).exists()
    )
    assert Tombstone.objects.filter(reason="dsar:17").count() == 1


@pytest.mark.parametrize(
    ("user_name", "call"),
    [
        ("teammate", "customer_erase"),  # in the team, but not its lead
        ("outsider", "customer_anonymise"),  # lead of another team
        ("privacy_officer", "customer_pseudonymise"),  # sees everyone, erases no one
        ("security_user", "customer_erase"),
    ],
)
def test_erasure_by_a_user_without_the_erase_permission_is_refused_whole(
    request, team, customer, user_name, call
):
    # given two customers of `team`
    user = request.getfixturevalue(user_name)
    other = CustomerFactory(team=team)
    before = sorted(Customer.objects.values_list("pk", "status", "family_name"))
    # when the user asks for both to be erased, anonymised or pseudonymised
    with pytest.raises(services.ErasePermissionDenied, match="権限"):
        getattr(services, call)(customer_ids=[customer.pk, other.pk], reason="dsar:9", actor=user)
    # then nothing changed and no tombstone or legal trail was written for it
    assert sorted(Customer.objects.values_list("pk", "status", "family_name")) == before
    assert not Tombstone.objects.exists()


def test_a_team_lead_erases_their_own_team_but_not_another(team, customer, foreign_customer, owner):
    # given the lead of `team`
    # when they erase a customer of their team together with a customer of another team
    with pytest.raises(services.ErasePermissionDenied):
        services.customer_erase(
            customer_ids=[customer.pk, foreign_customer.pk], reason="dsar:10", actor=owner
        )
    # then both remain; alone, their own customer is erased
    assert Customer.objects.filter(pk__in=[customer.pk, foreign_customer.pk]).count() == 2
    out = services.customer_erase(customer_ids=[customer.pk], reason="dsar:10", actor=owner)
    assert out.acted == [customer.pk] and not Customer.objects.filter(pk=customer.pk).exists()


def test_category_erase_refuses_an_unknown_scope(customer):
    with pytest.raises(services.RetentionError):
        services.customer_category_erase(
            customer_ids=[customer.pk], scope="customers", reason="x", actor=None
        )


def test_legal_hold_place_refuses_bad_input_and_writes_nothing(customer, privacy_officer):
    # given a missing customer id, an end in the past, and an unknown reason
    for kwargs in (
        dict(customer_ids=[customer.pk, 999999], reason="litigation"),
        dict(customer_ids=[customer.pk], reason="litigation", until=NOW - dt.timedelta(days=1)),
        dict(customer_ids=[customer.pk], reason="because"),
        dict(customer_ids=[], reason="litigation"),
    ):
        # then each is refused with a Japanese message and no hold exists
        with pytest.raises(services.RetentionError):
            services.legal_hold_place(placed_by=privacy_officer, **kwargs)
    assert not LegalHold.objects.exists()


def test_dry_run_count_equals_the_real_run(team, make_policy, frozen_now, privacy_officer):
    # given a mix of due, recent and held customers spread over several slices
    due = [set_activity(CustomerFactory(team=team), jst(2020, 1, 1)) for _ in range(7)]
    for _ in range(4):
        set_activity(CustomerFactory(team=team), jst(2026, 1, 1))
    services.legal_hold_place(
        customer_ids=[due[2].pk, due[5].pk], reason="tax_records", placed_by=privacy_officer
    )
    policy = make_policy(action=Action.ERASE, batch_size=2)
    # when the officer previews, then the run runs
    preview = selectors.retention_preview(user=privacy_officer, policy=policy, as_of=NOW)
    run = run_policy(policy)
    # then the counts agree
    assert (preview.affected, preview.held) == (5, 2)
    assert (run.erased, run.skipped_hold, run.examined) == (5, 2, 11)


def test_preview_sample_is_masked_and_restricted(
    team, customer, make_policy, frozen_now, privacy_officer, outsider
):
    # given a due customer
    set_activity(customer, jst(2020, 1, 1))
    policy = make_policy()
    # when the officer and an outsider (another team's staff) preview
    officer_view = selectors.retention_preview(user=privacy_officer, policy=policy, as_of=NOW)
    outsider_view = selectors.retention_preview(user=outsider, policy=policy, as_of=NOW)
    # then the officer's sample is masked even though the officer may see personal data
    assert officer_view.affected == 1
    row = officer_view.sample[0]
    assert (
        row["family_name"] == "山*" and "taro.yamada" not in row["email"] and row["email"].startswith("ta***")
    )
    # and the outsider sees nothing of this team
    assert (outsider_view.affected, outsider_view.sample) == (0, [])


def test_unsupported_scope_closes_the_run(make_policy):
    # given a policy on access logs (handled by the audit area, not by this engine yet)
    policy = make_policy(scope=Scope.ACCESS_LOGS, trigger=Trigger.RECORD_AGE, days=365, action=Action.ERASE)
    # when
    run = services.retention_run_start(policy=policy, enqueue=False)
    # then
    assert run.status == RetentionRun.Status.UNSUPPORTED and run.finished_at


def test_defaults_and_schedule_are_created_by_the_migration(db):
    # given the migrated database
    from django_celery_beat.models import PeriodicTask

    # then the default policies exist (disabled until the officer enables them) and beat has its schedule
    names = set(RetentionPolicy.objects.values_list("name", flat=True))
    assert "休眠顧客の匿名化（最終利用から3年）" in names
    assert "配信同意撤回後のマーケティングデータ消去（30日）" in names
    inactive = RetentionPolicy.objects.get(name="休眠顧客の匿名化（最終利用から3年）")
    assert (inactive.trigger, inactive.days, inactive.action, inactive.enabled) == (
        "inactive",
        1095,
        "anonymise",
        False,
    )
    tasks = dict(PeriodicTask.objects.values_list("task", "enabled"))
    assert tasks["crm.retention.run_due_policies"] is True and tasks["crm.retention.resume_stalled"] is True
    daily = PeriodicTask.objects.get(task="crm.retention.run_due_policies").crontab
    assert (daily.minute, daily.hour, str(daily.timezone)) == ("0", "3", "Asia/Tokyo")


def test_the_consent_app_registers_its_withdrawn_trigger_and_crm_never_imports_consent():
    # given the apps loaded (consent's ready() has run)
    # then the retention engine asks the consent app's own selector, reached through the registry
    import datetime as _dt

    from consent.selectors import withdrawn_since
    from crm.retention import participants

    source = participants.consent_withdrawn_source()
    assert source is not None
    as_of = _dt.datetime(2026, 4, 1, tzinfo=_dt.UTC)
    assert str(source("marketing_email", 30, as_of).query) == str(
        withdrawn_since("marketing_email", 30, as_of=as_of).query
    )
    # and no module of crm imports consent or incidents, not even inside a function (the same rule
    # import-linter checks in CI, .ci/run)
    import ast
    from pathlib import Path

    offenders = []
    for path in (Path(__file__).resolve().parents[3] / "crm").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path}: {n}" for n in names if n.split(".")[0] in ("consent", "incidents", "config")
            ]
    assert offenders == []
