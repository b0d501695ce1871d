"""Contract and audit flags on worked dates, and provision records removed by a retention policy after the
period 規則21 sets (issue #16)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.urls import reverse

from consent.provision import rules, selectors, services
from consent.provision.models import (
    CrossBorderBasis,
    ProcessorAudit,
    ProcessorContract,
    ProvisionRecord,
    ProvisionSubject,
    ReceiptRecord,
    Recipient,
)
from crm.retention import services as retention_services
from crm.retention.models import RetentionPolicy, RetentionRun
from crm.retention.selectors import retention_preview
from tests.consent.provision.conftest import ALL_CLAUSES

JST = ZoneInfo("Asia/Tokyo")


def _flags(officer, recipient, on):
    return selectors.recipient_flags(user=officer, on=on)[recipient.pk]


# --- flags -----------------------------------------------------------------------------------------------


def test_a_processor_without_contract_or_audit_is_flagged(officer):
    mail = Recipient.objects.create(name="メール配信", kind=Recipient.Kind.PROCESSOR)
    assert _flags(officer, mail, dt.date(2026, 4, 1)) == [rules.FLAG_NO_CONTRACT, rules.FLAG_NO_AUDIT]


def test_missing_clauses_expired_contract_and_overdue_audit_on_worked_dates(officer):
    # given a processor whose latest contract lacks the audit clause and ends on 2026-03-31, and whose audit
    # of 2025-04-15 set the next one due on 2026-04-14
    mail = Recipient.objects.create(name="メール配信", kind=Recipient.Kind.PROCESSOR)
    ProcessorContract.objects.create(
        recipient=mail, signed_on=dt.date(2023, 4, 1), document_ref="old", **ALL_CLAUSES
    )
    ProcessorContract.objects.create(
        recipient=mail,
        signed_on=dt.date(2024, 4, 1),
        expires_on=dt.date(2026, 3, 31),
        document_ref="CT-2",
        **{**ALL_CLAUSES, "clause_audits": False},
    )
    ProcessorAudit.objects.create(
        recipient=mail,
        audited_on=dt.date(2025, 4, 15),
        result=ProcessorAudit.Result.SATISFACTORY,
        next_due_on=dt.date(2026, 4, 14),
    )
    # then on the contract's last day only the missing clause shows (the latest contract counts)
    assert _flags(officer, mail, dt.date(2026, 3, 31)) == [rules.FLAG_MISSING_CLAUSES]
    # the next day the contract has expired
    assert _flags(officer, mail, dt.date(2026, 4, 1)) == [
        rules.FLAG_MISSING_CLAUSES,
        rules.FLAG_CONTRACT_EXPIRED,
    ]
    # and the day after the audit's due date, the audit is overdue as well
    assert _flags(officer, mail, dt.date(2026, 4, 15)) == [
        rules.FLAG_MISSING_CLAUSES,
        rules.FLAG_CONTRACT_EXPIRED,
        rules.FLAG_AUDIT_OVERDUE,
    ]


def test_a_foreign_recipient_is_flagged_until_a_basis_stands(officer):
    us = Recipient.objects.create(name="US Partner", kind=Recipient.Kind.THIRD_PARTY, country="US")
    assert _flags(officer, us, dt.date(2026, 4, 1)) == [rules.FLAG_NO_TRANSFER_BASIS]
    CrossBorderBasis.objects.create(
        recipient=us,
        kind="equivalent_system",
        recipient_measures="契約",
        effective_on=dt.date(2026, 1, 1),
        next_check_on=dt.date(2026, 6, 30),
    )
    assert _flags(officer, us, dt.date(2026, 6, 30)) == []
    assert _flags(officer, us, dt.date(2026, 7, 1)) == [rules.FLAG_NO_TRANSFER_BASIS]


def test_the_recipient_list_shows_the_flags(client, officer):
    Recipient.objects.create(name="メール配信", kind=Recipient.Kind.PROCESSOR)
    client.force_login(officer)
    html = client.get(reverse("admin:consent_recipient_changelist")).content.decode()
    assert "委託契約なし" in html and "監査の記録なし" in html


def test_only_the_privacy_officer_edits_recipients(client, teammate, officer):
    client.force_login(teammate)
    assert client.get(reverse("admin:consent_recipient_changelist")).status_code == 403
    assert client.get(reverse("admin:consent_datasystem_add")).status_code == 403
    client.force_login(officer)
    response = client.post(
        reverse("admin:consent_recipient_add"),
        {
            "name": "共同利用先",
            "kind": "joint_use",
            "country": "jp",
            **{f"{p}-TOTAL_FORMS": "0" for p in ("contracts", "audits", "transfer_bases")},
            **{f"{p}-INITIAL_FORMS": "0" for p in ("contracts", "audits", "transfer_bases")},
        },
    )
    # a joint user without the items APPI 27(5)(iii) requires is refused
    assert response.status_code == 200
    assert "共同利用では必須です" in response.content.decode()
    assert not Recipient.objects.filter(name="共同利用先").exists()


# --- retention (規則21) ------------------------------------------------------------------------------------


def _record(officer, customer, partner, basis, on):
    extra = {"opt_out_notified_on": dt.date(2020, 1, 1)} if basis == "opt_out" else {}
    if basis == "contract_as_record":
        extra["contract_id"] = ProcessorContract.objects.create(
            recipient=partner, signed_on=dt.date(2020, 1, 1), document_ref="C"
        ).pk
    return services.provision_record(
        actor=officer,
        recipient=partner,
        customer_ids=[customer.pk],
        data_items=["crm.Customer.email"],
        basis=basis,
        on=on,
        **extra,
    )


def test_provision_records_are_removed_by_a_retention_policy_after_their_period(officer, customer, partner):
    # given a record made 2026-04-01 (kept through 2029-04-01) and one whose contract is the record, last
    # provided 2026-04-01 (kept through 2027-04-01)
    three_years = _record(officer, customer, partner, "opt_out", dt.date(2026, 4, 1))
    one_year = _record(officer, customer, partner, "contract_as_record", dt.date(2026, 4, 1))
    assert (three_years.keep_until, one_year.keep_until) == (dt.date(2029, 4, 1), dt.date(2027, 4, 1))
    policy = RetentionPolicy.objects.create(
        name="第三者提供記録の保存期間（規則21）",
        scope=RetentionPolicy.Scope.PROVISION_RECORDS,
        trigger=RetentionPolicy.Trigger.PERIOD_ENDED,
        days=0,
        action=RetentionPolicy.Action.ERASE,
        legal_basis="規則21",
        enabled=True,
    )

    def run(as_of):
        started = retention_services.retention_run_start(policy=policy, as_of=as_of, enqueue=False)
        return retention_services.retention_run_to_completion(run=started)

    # when the policy runs on the last day of the one-year record, nothing goes
    last_day = dt.datetime(2027, 4, 1, 23, 0, tzinfo=JST)
    assert retention_preview(user=officer, policy=policy, as_of=last_day).affected == 0
    assert run(last_day).erased == 0
    # the day after, the one-year record is removed (with its links), the three-year one stays
    next_day = dt.datetime(2027, 4, 2, 0, 30, tzinfo=JST)
    assert retention_preview(user=officer, policy=policy, as_of=next_day).affected == 1
    done = run(next_day)
    assert (done.status, done.erased) == (RetentionRun.Status.COMPLETED, 1)
    assert list(ProvisionRecord.objects.values_list("pk", flat=True)) == [three_years.pk]
    assert not ProvisionSubject.objects.filter(record_id=one_year.pk).exists()
    # and on 2029-04-02 the three-year record goes too
    assert run(dt.datetime(2029, 4, 2, 9, 0, tzinfo=JST)).erased == 1
    assert not ProvisionRecord.objects.exists()


def test_a_receipt_record_is_removed_like_a_provision_record(officer, customer):
    record = services.receipt_record(
        actor=officer,
        provider_name="提供元",
        provider_address="東京都",
        acquisition="会員登録",
        customer_ids=[customer.pk],
        data_items=["crm.Customer.email"],
        basis="consent",
        received_on=dt.date(2026, 4, 1),
        contract_as_record=True,
    )
    policy = RetentionPolicy.objects.create(
        name="受領記録",
        scope="provision_records",
        trigger="period_ended",
        days=30,
        action="erase",
        legal_basis="規則24",
    )
    assert record.keep_until == dt.date(2027, 4, 1)
    after = dt.datetime(2027, 5, 2, 9, 0, tzinfo=JST)  # 30 days after the period ended
    run = retention_services.retention_run_start(policy=policy, as_of=after, enqueue=False)
    assert retention_services.retention_run_to_completion(run=run).erased == 1
    assert not ReceiptRecord.objects.exists()


def test_a_record_policy_with_a_customer_trigger_fails_naming_why(officer):
    policy = RetentionPolicy.objects.create(
        name="誤設定", scope="provision_records", trigger="inactive", days=30, action="erase", legal_basis="-"
    )
    run = retention_services.retention_run_start(policy=policy, as_of=dt.datetime(2027, 1, 1, tzinfo=JST))
    assert run.status == RetentionRun.Status.FAILED
    assert "規則21" in run.note


def test_the_records_policy_is_installed_disabled(officer, customer, partner):
    # given the policy the migration creates (disabled until the privacy officer has checked its dry run)
    policy = RetentionPolicy.objects.get(scope=RetentionPolicy.Scope.PROVISION_RECORDS)
    assert (policy.trigger, policy.days, policy.enabled) == ("period_ended", 0, False)
    # then its dry run counts the records past their period
    _record(officer, customer, partner, "opt_out", dt.date(2026, 4, 1))
    assert (
        retention_preview(user=officer, policy=policy, as_of=dt.datetime(2029, 4, 2, tzinfo=JST)).affected
        == 1
    )
