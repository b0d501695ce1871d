"""Demo recipients, contracts, audits, a cross-border basis, systems and flows for the privacy officer
(`manage.py seed_demo`, registered in ConsentConfig.ready()): every page of the data map has content, and
the recipient list shows each kind of flag."""

from __future__ import annotations

import datetime as dt
from typing import Any

from consent.models import Purpose
from consent.provision import rules, selectors, services
from consent.provision.models import (
    CrossBorderBasis,
    DataFlow,
    DataSystem,
    ProcessorAudit,
    ProcessorContract,
    Recipient,
)
from crm.classification import DataClass
from crm.models import Customer

ALL_CLAUSES = {name: True for name in rules.CONTRACT_CLAUSES}


def seed_provision(*, actor: Any) -> None:
    """Does nothing when recipients exist already (seed_demo runs on every `./dev up`)."""
    if Recipient.objects.exists():
        return
    today = selectors.today()
    purposes = {p.code: p for p in Purpose.objects.all()}
    mail = Recipient.objects.create(
        name="メール配信サービス株式会社",
        kind=Recipient.Kind.PROCESSOR,
        country="JP",
        contact="privacy@mail-service.example.jp",
        data_categories=[DataClass.DIRECT, DataClass.ATTRIBUTE],
    )
    ProcessorContract.objects.create(
        recipient=mail, signed_on=today - dt.timedelta(days=400), document_ref="CT-2025-001", **ALL_CLAUSES
    )
    ProcessorAudit.objects.create(
        recipient=mail,
        audited_on=today - dt.timedelta(days=200),
        result=ProcessorAudit.Result.SATISFACTORY,
        next_due_on=today + dt.timedelta(days=165),
    )
    analytics = Recipient.objects.create(
        name="Analytics Cloud Inc.",
        kind=Recipient.Kind.PROCESSOR,
        country="US",
        contact="dpo@analytics.example.com",
        data_categories=[DataClass.QUASI, DataClass.ATTRIBUTE],
    )
    partial = {**ALL_CLAUSES, "clause_audits": False}
    ProcessorContract.objects.create(
        recipient=analytics,
        signed_on=today - dt.timedelta(days=800),
        expires_on=today - dt.timedelta(days=30),
        document_ref="CT-2024-017",
        **partial,
    )
    ProcessorAudit.objects.create(
        recipient=analytics,
        audited_on=today - dt.timedelta(days=500),
        result=ProcessorAudit.Result.FINDINGS,
        findings="アクセスログの保存期間が契約と異なる",
        next_due_on=today - dt.timedelta(days=135),
    )
    CrossBorderBasis.objects.create(
        recipient=analytics,
        kind=CrossBorderBasis.Kind.EQUIVALENT,
        recipient_measures="APPIの基準に適合する体制（契約による担保）",
        safeguards="SCC",
        last_checked_on=today - dt.timedelta(days=200),
        next_check_on=today + dt.timedelta(days=165),
        effective_on=today - dt.timedelta(days=800),
    )
    partner = Recipient.objects.create(
        name="提携ポイント株式会社",
        kind=Recipient.Kind.THIRD_PARTY,
        country="JP",
        data_categories=[DataClass.DIRECT],
    )
    eu = Recipient.objects.create(
        name="Muster GmbH",
        kind=Recipient.Kind.GROUP_COMPANY,
        country="DE",
        data_categories=[DataClass.DIRECT, DataClass.ATTRIBUTE],
    )
    CrossBorderBasis.objects.create(
        recipient=eu, kind=CrossBorderBasis.Kind.DESIGNATED, safeguards="十分性認定", effective_on=today
    )
    for r, codes in (
        (mail, ("marketing_email",)),
        (analytics, ("analytics",)),
        (partner, ("third_party_provision",)),
        (eu, ("customer_management", "cross_border_transfer")),
    ):
        r.purposes.set([purposes[c] for c in codes if c in purposes])
    crm = DataSystem.objects.create(
        name="顧客管理システム（本システム）",
        is_this_crm=True,
        location="東京リージョン（クラウド）",
        country="JP",
        data_owner="営業本部長",
        steward="個人情報保護管理者",
    )
    pos = DataSystem.objects.create(
        name="店舗POS",
        location="各店舗・本社サーバ室",
        country="JP",
        data_owner="店舗運営部長",
        steward="情報システム部",
        data_categories=[DataClass.QUASI, DataClass.ATTRIBUTE],
        security_measures="店舗端末の施錠、通信の暗号化",
    )
    backup = DataSystem.objects.create(
        name="バックアップ",
        location="大阪リージョン（クラウド）",
        country="JP",
        data_owner="情報システム部長",
        data_categories=[DataClass.DIRECT, DataClass.QUASI, DataClass.ATTRIBUTE, DataClass.SPECIAL_CARE],
        security_measures="暗号化したまま保管、復元は二名で実施",
    )
    flows = (
        (pos, crm, None, "customer_management", DataFlow.Frequency.DAILY),
        (crm, backup, None, "customer_management", DataFlow.Frequency.DAILY),
        (crm, None, mail, "marketing_email", DataFlow.Frequency.WEEKLY),
        (crm, None, analytics, "analytics", DataFlow.Frequency.DAILY),
        (crm, None, partner, "third_party_provision", DataFlow.Frequency.MONTHLY),
        (crm, None, eu, "customer_management", DataFlow.Frequency.AD_HOC),
    )
    for source, system, recipient, code, frequency in flows:
        if code in purposes:
            DataFlow.objects.create(
                source=source,
                target_system=system,
                target_recipient=recipient,
                purpose=purposes[code],
                frequency=frequency,
            )
    # A provision to the partner (opt-out, notified to the PPC) and a receipt from a list provider, for the
    # first few customers: the record lists and the disclosure selector have rows.
    people = list(
        Customer.objects.filter(status=Customer.Status.ACTIVE).order_by("pk").values_list("pk", flat=True)[:6]
    )
    if not people:
        return
    services.provision_record(
        actor=actor,
        recipient=partner,
        customer_ids=people[:3],
        data_items=["crm.Customer.family_name", "crm.Customer.email"],
        basis=rules.BASIS_OPT_OUT,
        opt_out_notified_on=today - dt.timedelta(days=90),
        on=today - dt.timedelta(days=30),
    )
    services.receipt_record(
        actor=actor,
        provider_name="名簿提供株式会社",
        provider_address="東京都港区芝公園一丁目1番1号",
        provider_representative="代表取締役 佐藤 花子",
        acquisition="提供者の運営する懸賞サイトで、第三者提供への同意を得て取得（デモ）",
        customer_ids=people[3:],
        data_items=["crm.Customer.family_name", "crm.Customer.phone"],
        basis=rules.BASIS_CONSENT,
        received_on=today - dt.timedelta(days=60),
    )
