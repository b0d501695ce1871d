"""Writes of the insights: the imports of marketing spend and campaign results, saved segments, and the
exports of a segment (personal data within a purpose's lawful basis, or an anonymised data set).

An export is decided, recorded and audited before its first row is produced: the members are the segment's
customers the user may view (restrict) AND who may be used for the export's purpose now (the lawful-basis
rule registered by consent, crm.insights.hooks); the columns are those the classification registry assigns
to the purpose; values are masked unless the user may view personal data. An export to a recipient is
recorded as a provision (APPI Art. 29) in the same transaction as the export record, before the first row
(segment_export_personal, through hooks.record_provision: consent's provision_record).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from crm.audit.actors import audit_actor
from crm.classification import REGISTRY, DataClass, mask_value
from crm.insights import hooks, rules
from crm.insights.models import CampaignResult, MarketingSpend, Segment, SegmentExport
from crm.insights.selectors import kpi_months, segment_members
from crm.models import AuditEntry, Customer, Purchase
from crm.permissions import can_view_pii
from crm.queue import task_enqueue
from crm.retention.rules import TOP_AGE_BAND, age_band

if TYPE_CHECKING:
    from django.contrib.auth.models import User

MAX_IMPORT_BYTES = 2 * 1024 * 1024  # a year of spend or campaigns is a few kilobytes
MAX_IMPORT_ROWS = 20_000
ImportErrors = list[tuple[int, str]]


def _csv_rows(data: bytes, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a UTF-8 CSV with a header naming at least `required`; ValidationError for a
    file that is too big, not UTF-8, or without those columns."""
    if len(data) > MAX_IMPORT_BYTES:
        raise ValidationError(gettext("ファイルが大きすぎます。"))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError(gettext("UTF-8 のCSVファイルを指定してください。")) from exc
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise ValidationError(gettext("必要な列がありません: %(columns)s") % {"columns": ", ".join(missing)})
    for number, row in enumerate(reader, start=2):
        if number - 1 > MAX_IMPORT_ROWS:
            raise ValidationError(gettext("行数が多すぎます。"))
        yield number, {k: (v or "").strip() for k, v in row.items() if k is not None}


def _month(value: str) -> dt.date:
    try:
        return dt.datetime.strptime(value, "%Y-%m").date()
    except ValueError as exc:
        raise ValueError(gettext("月は YYYY-MM の形式で指定してください。")) from exc


def _count(value: str) -> int:
    if not value.isdigit():
        raise ValueError(gettext("件数は0以上の整数で指定してください。"))
    return int(value)


def marketing_spend_import(*, data: bytes, actor: User | None = None) -> tuple[int, ImportErrors]:
    """Create or replace spend rows from a CSV `month,channel,amount[,note]` (month YYYY-MM, amount in yen).
    All or nothing: with any bad row nothing is written and the errors name the lines."""
    channels = set(Customer.Channel.values)
    parsed: list[dict[str, Any]] = []
    errors: ImportErrors = []
    for line, row in _csv_rows(data, ("month", "channel", "amount")):
        try:
            if row["channel"] not in channels:
                raise ValueError(gettext("不明なチャネルです。"))
            amount = Decimal(row["amount"])
            if amount < 0 or amount != amount.to_integral_value() or amount >= 10**14:
                raise ValueError(gettext("金額は0以上の整数（円）で指定してください。"))
            parsed.append(
                {
                    "month": _month(row["month"]),
                    "channel": row["channel"],
                    "amount": amount,
                    "note": row.get("note", "")[:200],
                }
            )
        except (ValueError, InvalidOperation) as exc:
            errors.append(
                (line, str(exc) if isinstance(exc, ValueError) else gettext("金額が数値ではありません。"))
            )
    if errors:
        return 0, errors
    with transaction.atomic(), audit_actor(actor):
        for values in parsed:
            MarketingSpend.objects.update_or_create(
                month=values["month"],
                channel=values["channel"],
                defaults={"amount": values["amount"], "note": values["note"]},
            )
        kpi_cache_refresh_enqueue()  # the cached months would show the old spend for up to a day
    return len(parsed), []


def campaign_results_import(*, data: bytes, actor: User | None = None) -> tuple[int, ImportErrors]:
    """Create or replace campaign totals from a CSV `campaign_code,sent_on,sent,delivered,opened,clicked
    [,name]` (sent_on YYYY-MM-DD). All or nothing, like the spend import."""
    parsed: list[CampaignResult] = []
    errors: ImportErrors = []
    for line, row in _csv_rows(data, ("campaign_code", "sent_on", "sent", "delivered", "opened", "clicked")):
        try:
            try:
                sent_on = dt.date.fromisoformat(row["sent_on"])
            except ValueError as exc:
                raise ValueError(gettext("配信日は YYYY-MM-DD の形式で指定してください。")) from exc
            result = CampaignResult(
                campaign_code=row["campaign_code"],
                name=row.get("name", "")[:200],
                sent_on=sent_on,
                **{k: _count(row[k]) for k in ("sent", "delivered", "opened", "clicked")},
            )
            result.full_clean(validate_unique=False, validate_constraints=False)
            parsed.append(result)
        except ValidationError as exc:
            errors.append((line, "; ".join(exc.messages)))
        except ValueError as exc:
            errors.append((line, str(exc)))
    if errors:
        return 0, errors
    with transaction.atomic(), audit_actor(actor):
        for result in parsed:
            CampaignResult.objects.update_or_create(
                campaign_code=result.campaign_code,
                defaults={
                    f: getattr(result, f)
                    for f in ("name", "sent_on", "sent", "delivered", "opened", "clicked")
                },
            )
        kpi_cache_refresh_enqueue()
    return len(parsed), []


# --- the KPI cache ---------------------------------------------------------------------------------------

KPI_REFRESH_TASK = "crm.insights.kpi_cache_refresh"
KPI_MONTHS = 12


def kpi_cache_refresh(*, months: int = KPI_MONTHS) -> int:
    """Compute every indicator for the last `months` JST months and cache each month (selectors.kpi_months):
    at a million customers the computation takes seconds (bench/README.md), so beat runs it nightly and the
    page reads the cache. Returns the number of months cached."""
    return len(kpi_months(months=rules.months_back(timezone.localdate(), months), refresh=True))


def kpi_cache_refresh_enqueue() -> None:
    """Ask a worker to recompute the KPI months after the current transaction commits."""
    transaction.on_commit(lambda: task_enqueue(KPI_REFRESH_TASK))


def segment_save(*, segment: Segment, actor: User | None = None) -> Segment:
    """Validate the segment's filters against the schema (rules.SegmentFilters) and save it."""
    try:
        segment.filters = rules.SegmentFilters.parse(segment.filters).as_json()
    except rules.SegmentFilterError as exc:
        raise ValidationError(
            {"filters": gettext("条件「%(key)s」が不正です。") % {"key": str(exc)}}
        ) from exc
    with transaction.atomic(), audit_actor(actor):
        segment.full_clean()
        segment.save()
    return segment


# --- exports --------------------------------------------------------------------------------------

EXPORT_CHUNK = 2_000


def export_columns(purpose_code: str) -> list[str]:
    """Customer fields an export for `purpose_code` may carry: those the classification registry assigns to
    the purpose, personal and structured (free text can name anything, blind indexes are keys, special-care
    data never leaves by a segment export), after the internal id."""
    label = Customer._meta.label
    allowed = []
    for name, spec in REGISTRY.models.get(label, {}).items():
        if spec.data_class in (DataClass.DERIVED, DataClass.SPECIAL_CARE, DataClass.NOT_PERSONAL):
            continue
        if spec.free_text or purpose_code not in spec.purposes:
            continue
        allowed.append(name)
    return ["id", *allowed]


def _may_export(user: User, segment: Segment) -> None:
    if not (user.is_active and user.has_perm("crm.export_segment") and user.has_perm("crm.view_segment")):
        raise PermissionDenied(gettext("セグメントを出力する権限がありません。"))


def _usable_members(user: User, segment: Segment, purpose_code: str) -> Any:
    """The segment's customers `user` may view who may be used for the purpose now (ValidationError for an
    unknown purpose, PermissionDenied when no lawful-basis rule is registered)."""
    return hooks.usable_for(segment_members(user=user, segment=segment), purpose_code)


# Customer ids per audit entry of an export: a million-row export is a hundred entries, not one of megabytes.
AUDIT_IDS_PER_ENTRY = 10_000


def _audit_export(export: SegmentExport, ids: list[int], clear: bool) -> None:
    """The access log of an export: who took which customers (ids and counts only), for which purpose; one
    entry per AUDIT_IDS_PER_ENTRY customers (one entry for an empty export), each naming the export."""
    chunks = [ids[i : i + AUDIT_IDS_PER_ENTRY] for i in range(0, len(ids), AUDIT_IDS_PER_ENTRY)] or [[]]
    for part, chunk in enumerate(chunks, start=1):
        AuditEntry.objects.create(
            content_type=ContentType.objects.get_for_model(Customer),
            object_pk=f"segment-export:{export.pk}" + (f":{part}" if len(chunks) > 1 else ""),
            object_repr=f"セグメント出力 #{export.pk}（{len(ids)}件）",
            action=AuditEntry.Action.ACCESS,
            actor=export.created_by,
            additional_data={
                "export": {
                    "id": export.pk,
                    "segment": export.segment_id,
                    "kind": export.kind,
                    "purpose": export.purpose_code,
                    "destination": export.destination,
                    "columns": export.columns,
                    "clear": clear,
                    "count": len(ids),
                    "part": [part, len(chunks)],
                    "customer_ids": chunk,
                }
            },
        )


def _record_export(
    *,
    user: User,
    segment: Segment,
    purpose_code: str,
    kind: str,
    destination: str,
    recipient_ref: str,
    columns: list[str],
    ids: list[int],
    report: dict[str, Any] | None = None,
) -> SegmentExport:
    with transaction.atomic(), audit_actor(user):
        export = SegmentExport.objects.create(
            segment=segment,
            kind=kind,
            purpose_code=purpose_code,
            destination=destination,
            recipient_ref=recipient_ref,
            columns=columns,
            row_count=len(ids),
            report=report or {},
            created_by=user,
        )
        _audit_export(export, ids, clear=kind == SegmentExport.Kind.PERSONAL and can_view_pii(user))
    return export


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(rules.JST).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def segment_export_personal(
    *,
    user: User,
    segment: Segment,
    purpose_code: str,
    destination: str = SegmentExport.Destination.INTERNAL,
    recipient_ref: str = "",
    provision_basis: str = "",
    opt_out_notified_on: dt.date | None = None,
) -> tuple[SegmentExport, Iterator[list[str]]]:
    """Export a segment's customers for `purpose_code`: recorded and audited now, rows produced lazily (for a
    streamed CSV) in chunks, each chunk read again through the gate and the lawful-basis rule, so someone who
    withdrew or objected while the file streams is left out. Masked unless the user may view personal data.

    To a recipient (`destination` RECIPIENT, `recipient_ref` its id): the provision record (APPI Art. 29) is
    written by the registered recorder in the same transaction as the export record, before any row exists;
    `provision_basis` ("" for the recipient's usual one) and `opt_out_notified_on` are its ground. A refusal
    (ValidationError: a foreign recipient without a basis, a person in stop-use, missing consent …) leaves
    no export, no audit entry and no rows."""
    _may_export(user, segment)
    if destination not in SegmentExport.Destination.values:
        raise ValidationError(gettext("出力先が不正です。"))
    clear = can_view_pii(user)
    if destination == SegmentExport.Destination.RECIPIENT and not clear:
        # The file would hold masked values while the provision record (APPI Art. 29) says the items were
        # provided: a record of something that did not happen. Refused before anything is written.
        raise ValidationError(
            gettext(
                "提供先への出力には「個人データをマスクなしで閲覧」の権限が必要です"
                "（マスクした値を提供したという記録は作成できません）。"
            )
        )
    members = _usable_members(user, segment, purpose_code)
    columns = export_columns(purpose_code)
    ids = list(members.order_by("pk").values_list("pk", flat=True))
    with transaction.atomic():
        export = _record_export(
            user=user,
            segment=segment,
            purpose_code=purpose_code,
            kind=SegmentExport.Kind.PERSONAL,
            destination=destination,
            recipient_ref=recipient_ref,
            columns=columns,
            ids=ids,
        )
        if destination == SegmentExport.Destination.RECIPIENT:
            hooks.record_provision(
                export=export,
                customer_ids=ids,
                actor=user,
                basis=provision_basis,
                opt_out_notified_on=opt_out_notified_on,
            )
    label = Customer._meta.label

    def rows() -> Iterator[list[str]]:
        yield columns
        for start in range(0, len(ids), EXPORT_CHUNK):
            chunk = ids[start : start + EXPORT_CHUNK]
            still = _usable_members(user, segment, purpose_code).filter(pk__in=chunk).order_by("pk")
            for customer in still.only(*columns):
                values = [getattr(customer, c) for c in columns]
                if not clear:
                    values = [mask_value(label, c, v) for c, v in zip(columns, values, strict=True)]
                yield [_cell(v) for v in values]

    return export, rows()


# --- 匿名加工情報 (APPI Art. 43) -------------------------------------------------------------------

ANONYMISED_PURPOSE = "analytics"
# The released columns: every one describes the person, so every one is a quasi-identifier of the k check.
ANONYMISED_QUASI = ("age_band", "prefecture", "gender", "first_purchase_month")
ANONYMISED_ITEMS = (*ANONYMISED_QUASI, "purchases", "amount_band")
UNUSUAL_AGE = f"{TOP_AGE_BAND}歳以上"
AMOUNT_BAND = 10_000


def _anonymised_source_rows(ids: list[int], today: dt.date) -> Iterator[dict[str, Any]]:
    """Per customer: the generalised describing values and purchase figures, with no identifier, no linking
    code (member number, external id, devices, the internal id) and no free text (APPI 43(1), 規則34)."""
    for start in range(0, len(ids), EXPORT_CHUNK):
        chunk = ids[start : start + EXPORT_CHUNK]
        figures: dict[int, tuple[int, Decimal, dt.datetime | None]] = {}
        for customer_id, purchased_at, amount in Purchase.objects.filter(customer_id__in=chunk).values_list(
            "customer_id", "purchased_at", "amount"
        ):
            n, total, first = figures.get(customer_id, (0, Decimal(0), None))
            figures[customer_id] = (
                n + 1,
                total + amount,
                purchased_at if first is None else min(first, purchased_at),
            )
        for customer in Customer.objects.filter(pk__in=chunk).only(
            "pk", "birth_date", "prefecture", "gender"
        ):
            n, total, first = figures.get(customer.pk, (0, Decimal(0), None))
            yield {
                "age_band": age_band(customer.birth_date, today) or "*",
                "prefecture": customer.prefecture or "*",
                "gender": customer.gender or "*",
                "first_purchase_month": rules.month_of(first).strftime("%Y-%m") if first else "*",
                "purchases": str(min(n, 20)) if n < 20 else "20+",
                "amount_band": f"{int(total) // AMOUNT_BAND * AMOUNT_BAND}+",
            }


def segment_export_anonymised(
    *,
    user: User,
    segment: Segment,
    k: int = 5,
    max_suppression: float = 0.05,
) -> tuple[SegmentExport, list[list[str]]]:
    """An anonymised data set (匿名加工情報) of the segment's customers usable for analytics: generalised and
    suppressed until every combination of the released columns has at least `k` rows (rules.k_anonymise),
    unusual values (ages of 90 and over) removed; the report (k achieved, rows suppressed, items) saved with
    the export record. Publishing its items (APPI 43(3)) is recorded afterwards
    (anonymised_items_published)."""
    _may_export(user, segment)
    if not 2 <= k <= 1000:
        raise ValidationError(gettext("k は2以上1000以下で指定してください。"))
    members = _usable_members(user, segment, ANONYMISED_PURPOSE)
    ids = list(members.order_by("pk").values_list("pk", flat=True))
    today = timezone.localdate()
    released, report = rules.k_anonymise(
        _anonymised_source_rows(ids, today),
        quasi=ANONYMISED_QUASI,
        k=k,
        max_suppression=max_suppression,
        unusual={"age_band": frozenset({UNUSUAL_AGE})},
    )
    export = _record_export(
        user=user,
        segment=segment,
        purpose_code=ANONYMISED_PURPOSE,
        kind=SegmentExport.Kind.ANONYMISED,
        destination=SegmentExport.Destination.INTERNAL,
        recipient_ref="",
        columns=list(ANONYMISED_ITEMS),
        ids=ids,
        report=report.as_json(),
    )
    rows = [list(ANONYMISED_ITEMS), *([str(r[c]) for c in ANONYMISED_ITEMS] for r in released)]
    return export, rows


def anonymised_items_published(*, export: SegmentExport, url: str, actor: User) -> SegmentExport:
    """Record that the items of an anonymised data set were published (APPI Art. 43(3), 規則36): when and
    where. Once only: a publication is a fact."""
    if export.kind != SegmentExport.Kind.ANONYMISED:
        raise ValidationError(gettext("匿名加工情報の出力ではありません。"))
    if export.items_published_at is not None:
        raise ValidationError(gettext("項目の公表は記録済みです。"))
    with transaction.atomic(), audit_actor(actor):
        export.items_published_at = timezone.now()
        export.items_published_url = url
        export.full_clean()
        export.save(update_fields=["items_published_at", "items_published_url"])
    return export
