"""Writes of third-party provision: the provision record written before personal data leaves for a
recipient (APPI 29), refused for a foreign recipient without a cross-border basis (APPI 28) or a provision
without its basis (APPI 27); receipt records (APPI 30); the export to a recipient built on them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext

from consent import selectors as consent_selectors
from consent.models import Purpose
from consent.provision import rules, selectors
from consent.provision.models import (
    ProvisionBasis,
    ProvisionRecord,
    ProvisionSubject,
    ReceiptRecord,
    ReceiptSubject,
    Recipient,
)
from crm.audit.actors import audit_actor
from crm.classification import REGISTRY, DataClass
from crm.models import AuditEntry, Customer

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# At most this many people in one provision record call (a larger export is several batches).
MAX_SUBJECTS = 50_000


class ProvisionRefused(ValidationError):
    """A provision that may not happen: no record is written and no data leaves."""


def _data_items(items: Iterable[str]) -> list[str]:
    """Items as registry names ("crm.Customer.email"); each must be a classified field."""
    out = []
    for item in items:
        label, _dot, name = item.rpartition(".")
        if REGISTRY.spec(label, name) is None:
            raise ProvisionRefused(
                gettext("提供する項目「%(item)s」は分類レジストリにありません。") % {"item": item}
            )
        out.append(item)
    if not out:
        raise ProvisionRefused(gettext("提供する項目を選んでください（法第29条、規則20）。"))
    return sorted(set(out))


def _is_special_care(item: str) -> bool:
    label, _dot, name = item.rpartition(".")
    spec = REGISTRY.spec(label, name)
    return spec is not None and spec.data_class == DataClass.SPECIAL_CARE


def _subjects(actor: User, customer_ids: Iterable[int]) -> list[int]:
    ids = sorted(set(customer_ids))
    if not ids:
        raise ProvisionRefused(gettext("提供する本人を選んでください。"))
    if len(ids) > MAX_SUBJECTS:
        raise ProvisionRefused(gettext("一度に記録できる本人は%(n)d人までです。") % {"n": MAX_SUBJECTS})
    visible = set(Customer.objects.restrict(actor, "view").filter(pk__in=ids).values_list("pk", flat=True))
    if len(visible) != len(ids):
        # Refused whole, naming no one: a customer outside the actor's reach looks like an unknown one.
        raise ProvisionRefused(
            gettext("閲覧できない顧客が%(n)d人含まれています。") % {"n": len(ids) - len(visible)}
        )
    return ids


def _all_consented(ids: list[int], purpose: Purpose, why: str) -> None:
    qs = Customer.objects.filter(pk__in=ids)
    granted = consent_selectors.consented_to(qs, purpose.code).count()
    if granted != len(ids):
        raise ProvisionRefused(
            gettext("%(why)s: %(n)d人の同意がありません（利用目的 %(purpose)s）。")
            % {"why": why, "n": len(ids) - granted, "purpose": purpose.code}
        )


def provision_check(
    *,
    recipient: Recipient,
    customer_ids: list[int],
    data_items: list[str],
    basis: str,
    on: dt.date,
    purpose: Purpose | None = None,
    opt_out_notified_on: dt.date | None = None,
    contract_id: int | None = None,
) -> None:
    """Refuse (ProvisionRefused) a provision without its lawful ground on `on`:

    - a foreign recipient (APPI 28): a cross-border basis standing on `on`; when it is consent, every
      person's consent to its purpose (規則17);
    - consent (27(1)): every person's consent to `purpose`;
    - opt-out (27(2)): the date the PPC was notified, on or before `on`;
    - contract as record (規則19(3)): a contract of this recipient;
    - entrustment (27(5)(i)): a processor with a contract in force on `on`;
    - joint use (27(5)(iii)): a joint user whose items were published on or before `on`.
    Whatever the basis, nobody in stop-use (利用停止, APPI 35(1)) or anonymised is provided (a closed account
    still may be, to a processor keeping its records), and special-care data (要配慮個人情報) never by
    opt-out (27(2) proviso). Nobody whose 第三者提供の停止 (APPI 35(3)) the request desk fulfilled is
    provided to a third party; entrustment (27(5)(i)) and joint use (27(5)(iii)) are not provision to a
    third party and stay possible (the processor keeps working for us, the joint users were published).
    """
    stopped = (
        Customer.objects.filter(pk__in=customer_ids)
        .exclude(status__in=(Customer.Status.ACTIVE, Customer.Status.CLOSED))
        .count()
    )
    if stopped:
        raise ProvisionRefused(
            gettext("利用停止中または匿名化済みの顧客が%(n)d人含まれています（法第35条）。") % {"n": stopped}
        )
    if basis not in rules.NOT_THIRD_PARTY_BASES:
        no_provision = Customer.objects.filter(
            pk__in=customer_ids, provision_stopped_at__isnull=False
        ).count()
        if no_provision:
            raise ProvisionRefused(
                gettext("第三者提供の停止を請求された顧客が%(n)d人含まれています（法第35条第3項）。")
                % {"n": no_provision}
            )
    if basis == rules.BASIS_OPT_OUT and any(_is_special_care(item) for item in data_items):
        raise ProvisionRefused(
            gettext("要配慮個人情報はオプトアウトで提供できません（法第27条2項ただし書）。")
        )
    if recipient.foreign:
        xb = selectors.transfer_basis(recipient=recipient, on=on)
        if xb is None:
            raise ProvisionRefused(
                gettext("外国にある第三者（%(country)s）への提供の根拠が登録されていません（法第28条）。")
                % {"country": recipient.country}
            )
        if xb.kind == rules.XB_CONSENT:
            if xb.purpose is None:
                raise ProvisionRefused(
                    gettext("同意による外国移転の根拠に利用目的が登録されていません（法第28条1項）。")
                )
            _all_consented(customer_ids, xb.purpose, gettext("外国にある第三者への提供（法第28条1項）"))
    if basis == rules.BASIS_CONSENT:
        if purpose is None:
            raise ProvisionRefused(gettext("同意による提供には利用目的を指定してください（法第27条1項）。"))
        _all_consented(customer_ids, purpose, gettext("本人の同意による提供（法第27条1項）"))
    elif basis == rules.BASIS_OPT_OUT:
        if opt_out_notified_on is None or opt_out_notified_on > on:
            raise ProvisionRefused(
                gettext("オプトアウトによる提供は個人情報保護委員会への届出後に限ります（法第27条2項）。")
            )
    elif basis == rules.BASIS_CONTRACT_AS_RECORD:
        if contract_id is None or not recipient.contracts.filter(pk=contract_id).exists():
            raise ProvisionRefused(gettext("記録に代える契約書を選んでください（規則19条3項）。"))
    elif basis == rules.BASIS_ENTRUSTMENT:
        in_force = recipient.contracts.filter(signed_on__lte=on).exclude(expires_on__lt=on)
        if recipient.kind != Recipient.Kind.PROCESSOR or not in_force.exists():
            raise ProvisionRefused(
                gettext("委託に伴う提供には有効な委託契約が必要です（法第25条・第27条5項1号）。")
            )
    elif basis == rules.BASIS_JOINT_USE:
        published = recipient.joint_published_on
        if recipient.kind != Recipient.Kind.JOINT_USE or published is None or published > on:
            raise ProvisionRefused(
                gettext("共同利用は必要な事項を本人に通知・公表した後に限ります（法第27条5項3号）。")
            )
    else:
        raise ProvisionRefused(gettext("提供の根拠を選んでください。"))


def _audit_subjects(record: Any, ids: list[int], actor: User | None) -> None:
    """One audit entry per write of a record's people: the links are bulk-inserted, which django-auditlog's
    signals do not see. Ids and counts only."""
    AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(type(record)),
        object_pk=str(record.pk),
        object_id=record.pk,
        object_repr=str(record),
        action=AuditEntry.Action.UPDATE,
        changes={},
        actor=actor,
        additional_data={"subjects_linked": {"count": len(ids), "customer_ids": ids}},
    )


def provision_record(
    *,
    actor: User,
    recipient: Recipient,
    customer_ids: Iterable[int],
    data_items: Iterable[str],
    basis: str,
    on: dt.date | None = None,
    purpose_code: str = "",
    opt_out_notified_on: dt.date | None = None,
    contract_id: int | None = None,
    batch: bool = False,
) -> ProvisionRecord:
    """Write the provision record (APPI 29; 規則19–20) of giving `data_items` of `customer_ids` to
    `recipient` on `on` (default today, JST) — the one service every path sending personal data to a
    recipient calls BEFORE anything leaves. Refused whole (ProvisionRefused, nothing written) without the
    ground provision_check asks for.

    `batch` (規則19(2), repeated provision to one recipient): the open batch record of the same recipient,
    basis and items is extended (its last provision date, count and people) instead of a new record.
    """
    on = on or selectors.today()
    items = _data_items(data_items)
    ids = _subjects(actor, customer_ids)
    if basis not in ProvisionBasis.values:
        raise ProvisionRefused(gettext("提供の根拠を選んでください。"))
    purpose = Purpose.objects.filter(code=purpose_code).first() if purpose_code else None
    if purpose_code and purpose is None:
        raise ProvisionRefused(gettext("利用目的「%(code)s」は登録されていません。") % {"code": purpose_code})
    with transaction.atomic(), audit_actor(actor):
        recipient = Recipient.objects.select_for_update().get(pk=recipient.pk)
        provision_check(
            recipient=recipient,
            customer_ids=ids,
            data_items=items,
            basis=basis,
            on=on,
            purpose=purpose,
            opt_out_notified_on=opt_out_notified_on,
            contract_id=contract_id,
        )
        record = None
        if batch:
            record = (
                ProvisionRecord.objects.filter(
                    recipient=recipient, basis=basis, purpose=purpose, data_items=items, batch=True
                )
                .order_by("-last_provided_on", "-pk")
                .first()
            )
        if record is not None:
            record.last_provided_on = max(record.last_provided_on, on)
            record.provisions += 1
        else:
            record = ProvisionRecord(
                recipient=recipient,
                basis=basis,
                purpose=purpose,
                opt_out_notified_on=opt_out_notified_on,
                contract_id=contract_id,
                data_items=items,
                first_provided_on=on,
                last_provided_on=on,
                batch=batch,
                created_on=on,
                created_by=actor,
            )
        record.keep_until = rules.record_keep_until(
            basis=basis, created_on=record.created_on, last_provided_on=record.last_provided_on, batch=batch
        )
        record.save()
        ProvisionSubject.objects.bulk_create(
            [ProvisionSubject(record=record, customer_id=i) for i in ids], ignore_conflicts=True
        )
        _audit_subjects(record, ids, actor)
    return record


def receipt_record(
    *,
    actor: User,
    provider_name: str,
    provider_address: str,
    provider_representative: str = "",
    acquisition: str,
    customer_ids: Iterable[int],
    data_items: Iterable[str],
    basis: str,
    received_on: dt.date,
    contract_as_record: bool = False,
) -> ReceiptRecord:
    """Record receiving personal data from a third party (APPI 30; 規則22–24): the provider, how the
    provider acquired the data (confirmed, 30(1)(ii)), the items and the people. Kept like provision records
    (規則24: 3 years, 1 year where the contract stands as the record)."""
    if not acquisition.strip():
        raise ProvisionRefused(
            gettext("提供者による取得の経緯を確認して記録してください（法第30条1項2号）。")
        )
    items = _data_items(data_items)
    ids = _subjects(actor, customer_ids)
    created_on = selectors.today()
    keep_basis = rules.BASIS_CONTRACT_AS_RECORD if contract_as_record else basis
    with transaction.atomic(), audit_actor(actor):
        record = ReceiptRecord.objects.create(
            provider_name=provider_name,
            provider_address=provider_address,
            provider_representative=provider_representative,
            acquisition=acquisition,
            data_items=items,
            received_on=received_on,
            basis=basis,
            created_on=created_on,
            keep_until=rules.record_keep_until(
                basis=keep_basis, created_on=created_on, last_provided_on=received_on, batch=False
            ),
            created_by=actor,
        )
        ReceiptSubject.objects.bulk_create([ReceiptSubject(record=record, customer_id=i) for i in ids])
        _audit_subjects(record, ids, actor)
    return record


def provision_export(
    *,
    actor: User,
    recipient: Recipient,
    customer_ids: Iterable[int],
    fields: Iterable[str],
    basis: str,
    purpose_code: str = "",
    opt_out_notified_on: dt.date | None = None,
    contract_id: int | None = None,
    batch: bool = False,
) -> tuple[ProvisionRecord, Iterator[list[str]]]:
    """Export customers' fields for a recipient: the provision record is written first (provision_record,
    committed before a row is read), then the rows (header first) through the gate. Only a user who may see
    personal data in clear may export it (crm.view_customer_pii)."""
    if not actor.has_perm("crm.view_customer_pii"):
        raise ProvisionRefused(
            gettext("個人データの書き出しには「個人データをマスクなしで閲覧」の権限が必要です。")
        )
    names = [f for f in fields if REGISTRY.spec(Customer._meta.label, f) is not None]
    if not names:
        raise ProvisionRefused(gettext("書き出す項目を選んでください。"))
    record = provision_record(
        actor=actor,
        recipient=recipient,
        customer_ids=customer_ids,
        data_items=[f"{Customer._meta.label}.{n}" for n in names],
        basis=basis,
        purpose_code=purpose_code,
        opt_out_notified_on=opt_out_notified_on,
        contract_id=contract_id,
        batch=batch,
    )
    ids = sorted(set(customer_ids))
    # The export is a read of personal data in clear: one access entry (ids, fields, record), as a list page
    # writes (django-auditlog logs single-object views only).
    AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(Customer),
        object_pk=f"provision:{record.pk}",
        object_repr=f"顧客 {len(ids)}件を提供先へ書き出し（提供記録 #{record.pk}）",
        action=AuditEntry.Action.ACCESS,
        actor=actor,
        additional_data={
            "export": {
                "record": record.pk,
                "recipient": recipient.pk,
                "ids": ids,
                "fields": names,
                "clear": True,
            }
        },
    )

    def rows() -> Iterator[list[str]]:
        yield ["id", *names]
        people = Customer.objects.restrict(actor, "view").filter(pk__in=ids).order_by("pk")
        for c in people.iterator(chunk_size=500):
            yield [str(c.pk), *("" if getattr(c, n) is None else str(getattr(c, n)) for n in names)]

    return record, rows()


def segment_export_provision(
    *,
    export: Any,
    customer_ids: list[int],
    actor: User,
    basis: str = "",
    opt_out_notified_on: dt.date | None = None,
) -> ProvisionRecord:
    """The provision recorder crm's segment exports call (registered from consent.registrations as
    crm.insights.hooks' recorder) before a segment leaves for a recipient: provision_record for the export's
    recipient (`export.recipient_ref`, one the actor may provide to: selectors.providable_recipients), its
    columns as the data items, its purpose, and `basis` or the recipient kind's usual one
    (rules.default_basis: processor → entrustment, joint user → joint use, otherwise the person's consent to
    the export's purpose). Refused (ProvisionRefused, nothing written) as provision_record refuses, with the
    reason after a translated lead."""
    ref = str(export.recipient_ref)
    recipient = None
    if ref.isascii() and ref.isdigit():
        recipient = selectors.providable_recipients(actor).filter(pk=int(ref)).first()
    if recipient is None:
        raise ProvisionRefused(
            gettext("提供先を選んでください（閲覧でき、提供記録を作成できる提供先に限ります）。")
        )
    try:
        return provision_record(
            actor=actor,
            recipient=recipient,
            customer_ids=customer_ids,
            data_items=[f"{Customer._meta.label}.{column}" for column in export.columns],
            basis=basis or rules.default_basis(recipient.kind),
            purpose_code=export.purpose_code,
            opt_out_notified_on=opt_out_notified_on,
        )
    except ProvisionRefused as exc:
        raise ProvisionRefused(
            gettext("第三者提供の記録（法第29条）を作成できないため、出力しませんでした: %(reason)s")
            % {"reason": " ".join(exc.messages)}
        ) from exc
