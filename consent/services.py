"""Writes of the consent app: purposes and their versions, the consent ledger, visitor links, 要配慮 data.

Every function is one transaction (consent_record: one statement). The ledger is append-only: a consent or a
withdrawal is always a new ConsentEvent row, and the current-state row (ConsentState) is upserted with it,
keeping the newer event by (occurred_at, id) so late-arriving older events (offline POS, paper forms) cannot
overwrite a newer decision.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_ipv46_address
from django.db import connection, transaction
from django.db.models.signals import post_save
from django.utils import timezone

from consent import rules, selectors
from consent.models import (
    ConsentEvent,
    ConsentState,
    LegalBasis,
    Objection,
    Purpose,
    PurposeCategory,
    PurposeVersion,
    SpecialCareRecord,
    VisitorLink,
)
from crm import rawsql
from crm.audit.drafts import audit_create_draft
from crm.classification import REDACTED
from crm.crypto import DecryptionError
from crm.models import AuditEntry, Customer
from crm.retention.services import visitor_events_erase
from crm.services import _acting

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from crm.fields import EncryptedCharField

EVIDENCE_KEYS = frozenset({"form_id", "text_hash", "source_ip", "user_agent", "operator_id"})
# A device clock a little ahead is tolerated; a consent "given" tomorrow is not.
FUTURE_TOLERANCE = dt.timedelta(minutes=5)


# --- purposes ------------------------------------------------------------------------------------------


def _texts_changed(version: PurposeVersion | None, texts: dict[str, str]) -> bool:
    return version is None or any(getattr(version, k) != v for k, v in texts.items())


def _version_add(
    *, purpose: Purpose, texts: dict[str, str], actor: User | None, basis_change_reason: str = ""
) -> PurposeVersion:
    for key, value in texts.items():
        if key != "legal_basis" and not value.strip():
            raise ValidationError({key: "利用目的の名称と説明は日本語・英語とも必須です。"})
    last = PurposeVersion.objects.filter(purpose=purpose).order_by("-version").first()
    version = PurposeVersion(
        purpose=purpose,
        version=(last.version + 1) if last else 1,
        text_hash=rules.purpose_text_hash(**texts),
        created_by=actor if getattr(actor, "pk", None) else None,
        basis_change_reason=basis_change_reason,
        **{k: v.strip() if k != "legal_basis" else v for k, v in texts.items()},
    )
    version.save()
    purpose.current_version = version
    purpose.legal_basis = texts["legal_basis"]
    purpose.save(update_fields=["current_version", "legal_basis", "updated_at"])
    return version


def purpose_create(
    *,
    code: str,
    category: str,
    legal_basis: str,
    title_ja: str,
    title_en: str,
    description_ja: str,
    description_en: str,
    is_published: bool = True,
    display_order: int = 100,
    actor: User | None = None,
) -> Purpose:
    """Create a purpose of use with its first version. ValidationError (nothing written) on bad input."""
    with transaction.atomic(), _acting(actor):
        purpose = Purpose(
            code=code,
            category=category,
            legal_basis=legal_basis,
            is_published=is_published,
            display_order=display_order,
        )
        purpose.full_clean(exclude=["current_version"])
        purpose.save()
        _version_add(
            purpose=purpose,
            texts={
                "title_ja": title_ja,
                "title_en": title_en,
                "description_ja": description_ja,
                "description_en": description_en,
                "legal_basis": legal_basis,
            },
            actor=actor,
        )
    return purpose


def purpose_revise(
    *,
    purpose: Purpose,
    title_ja: str,
    title_en: str,
    description_ja: str,
    description_en: str,
    legal_basis: str | None = None,
    basis_change_reason: str = "",
    actor: User | None = None,
) -> PurposeVersion:
    """Change the wording (or legal basis) of a purpose: a new version when anything differs.

    The old versions stay as they were: consents given under them keep pointing at the text the person saw.
    Returns the current version (the new one, or the unchanged current one when nothing differs).
    Moving a purpose from consent to another basis while consents to it stand is refused unless
    `basis_change_reason` records the decision (kept on the new version): the people who consented were
    told that withdrawing ends the use, which a weaker basis no longer promises.
    """
    texts = {
        "title_ja": title_ja.strip(),
        "title_en": title_en.strip(),
        "description_ja": description_ja.strip(),
        "description_en": description_en.strip(),
        "legal_basis": legal_basis or purpose.legal_basis,
    }
    _choice(texts["legal_basis"], LegalBasis.choices, "法的根拠")
    with transaction.atomic(), _acting(actor):
        # Lock the purpose so two officers revising at once get versions n+1 and n+2, not two n+1.
        locked = (
            Purpose.objects.select_for_update(of=("self",))
            .select_related("current_version")
            .get(pk=purpose.pk)
        )
        if not _texts_changed(locked.current_version, texts):
            return cast(PurposeVersion, locked.current_version)  # unchanged texts: a current version exists
        basis_change_reason = basis_change_reason.strip()
        if not basis_change_reason and selectors.basis_change_needs_decision(
            purpose=locked, new_basis=texts["legal_basis"]
        ):
            raise ValidationError(
                {
                    "basis_change_reason": "同意が記録されている利用目的の法的根拠を同意以外に変更するには、"
                    "判断の記録（理由）が必要です（GDPR第6条・第7条3項）。"
                }
            )
        version = _version_add(
            purpose=locked, texts=texts, actor=actor, basis_change_reason=basis_change_reason
        )
    purpose.refresh_from_db()
    return version


def purpose_update_settings(
    *,
    purpose: Purpose,
    category: str | None = None,
    is_published: bool | None = None,
    display_order: int | None = None,
    actor: User | None = None,
) -> Purpose:
    """Change the unversioned settings of a purpose (category, publication, order).

    Unpublished purposes accept no new consent and select nobody (consented_to), but their versions and
    the ledger rows pointing at them stay.
    """
    with transaction.atomic(), _acting(actor):
        if category is not None:
            purpose.category = _choice(category, PurposeCategory.choices, "区分")
        if is_published is not None:
            purpose.is_published = is_published
        if display_order is not None:
            purpose.display_order = display_order
        purpose.full_clean(exclude=["current_version"])
        purpose.save(update_fields=["category", "is_published", "display_order", "updated_at"])
    return purpose


# --- the ledger ------------------------------------------------------------------------------------------


def _choice(value: str, choices: Any, label: str) -> str:
    valid = {c for c, _label in choices}
    if value not in valid:
        raise ValidationError(f"{label}の値「{value}」は使用できません（{'、'.join(sorted(valid))}）。")
    return value


# The current-state upsert: keeps the newer of the stored and the new event by (occurred_at, id).
_STATE_UPSERT_SQL = """
INSERT INTO consent_consentstate (customer_id, purpose_id, granted, event_id, version, channel, occurred_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (customer_id, purpose_id) DO UPDATE SET
    granted = EXCLUDED.granted, event_id = EXCLUDED.event_id, version = EXCLUDED.version,
    channel = EXCLUDED.channel, occurred_at = EXCLUDED.occurred_at
WHERE (consent_consentstate.occurred_at, consent_consentstate.event_id)
    < (EXCLUDED.occurred_at, EXCLUDED.event_id)
"""


def _state_upsert(event: ConsentEvent, version_no: int) -> tuple[str, list[Any]]:
    granted = event.action == ConsentEvent.Action.GRANT
    return _STATE_UPSERT_SQL, [
        *(event.customer_id, event.purpose_id, granted, event.pk),
        *(version_no, event.channel, event.occurred_at),
    ]


def _event_id_reserve() -> int:
    """A ledger id from the table's own sequence, before the row is written (its audit entry names it)."""
    with rawsql.prepared_cursor() as cur:
        cur.execute(f"SELECT {selectors.NEXT_EVENT_ID_SQL}")
        return int(cur.fetchone()[0])


Companion = Callable[[ConsentEvent], tuple[str, list[Any]]]


def _ledger_write(event: ConsentEvent, version_no: int, companion: Companion | None = None) -> None:
    """Insert the ledger row, its audit entry and the current-state upsert as ONE statement.

    Atomic without a transaction of its own (one round trip, no BEGIN/COMMIT in autocommit): a consent
    write is the integration API's busiest call. The audit entry is the one auditlog's receiver would
    have written (crm.audit.audit_create_draft, tested to match), so the row is audited exactly as a save.
    `companion(event)`: one more INSERT to write in the same statement (the API's stored answer).

    Kept exception to "Django's defaults" (README, Architecture). Why: the busiest API call, measured in
    bench/api_bench.py; three ORM saves in a transaction cost several round trips. What it costs to
    maintain: auditlog's receiver is bypassed, so audit_create_draft must keep writing what it would have
    written (pinned by tests/consent/test_ledger_write.py), and a new column of the ledger, the state or the
    audit entry goes through ConstantInsert, not a save() override or a signal.
    """
    if event.pk is None:
        event.pk = _event_id_reserve()
    event.recorded_at = timezone.now()
    draft = audit_create_draft(event)
    statements = [event.insert_statement()]
    if draft is not None:
        statements.append(draft.entry.insert_statement())
    if companion is not None:
        statements.append(companion(event))
    if event.customer_id:
        statements.append(_state_upsert(event, version_no))
    rawsql.insert_together(statements)
    event._state.adding, event._state.db = False, "default"
    if draft is not None:
        draft.written()


def _state_apply(event: ConsentEvent, version_no: int) -> None:
    """Upsert the current state for a ledger row already written (visitor links copy rows in bulk)."""
    sql, params = _state_upsert(event, version_no)
    with rawsql.prepared_cursor() as cur:
        cur.execute(sql, params)


def _evidence(evidence: dict[str, Any] | None, version: PurposeVersion) -> dict[str, Any]:
    evidence = dict(evidence or {})
    unknown = set(evidence) - EVIDENCE_KEYS
    if unknown:
        raise ValidationError(
            f"証跡の項目「{'、'.join(sorted(unknown))}」は使用できません（{'、'.join(sorted(EVIDENCE_KEYS))}）。"
        )
    text_hash = str(evidence.get("text_hash") or version.text_hash).lower()
    if not rules.is_sha256_hex(text_hash):
        raise ValidationError("提示文面のハッシュはSHA-256の16進数64桁で指定してください。")
    source_ip = str(evidence.get("source_ip") or "")
    if source_ip:
        try:
            validate_ipv46_address(source_ip)
        except ValidationError:
            raise ValidationError("送信元IPアドレスの形式が正しくありません。") from None
    operator = None
    if evidence.get("operator_id"):
        operator = get_user_model().objects.filter(pk=evidence["operator_id"]).first()
        if operator is None:
            raise ValidationError("入力した従業者（operator_id）が見つかりません。")
    return {
        "form_id": str(evidence.get("form_id") or "")[:100],
        "text_hash": text_hash,
        "source_ip": source_ip,
        "user_agent": str(evidence.get("user_agent") or "")[:500],
        "operator": operator,
    }


def consent_record(
    *,
    purpose_code: str,
    action: str,
    method: str,
    channel: str,
    customer: Customer | None = None,
    visitor_id: str = "",
    evidence: dict[str, Any] | None = None,
    occurred_at: dt.datetime | None = None,
    actor: User | None = None,
    api_client_id: int | None = None,
    purpose: Purpose | None = None,
    event_id: int | None = None,
    companion: Companion | None = None,
) -> ConsentEvent:
    """Append one grant or withdrawal to the ledger and update the current state, in one statement.

    Recorded against the purpose's current (published) version. `customer` or `visitor_id` is required; a
    visitor already linked to a customer is recorded for that customer. Raises ValidationError with a
    Japanese message, writing nothing, on an unknown/unpublished purpose, an invalid method for the purpose
    (e.g. opt-out for 要配慮個人情報, APPI Art. 20(2)), a time in the future or malformed evidence.
    `event_id`: an id the caller already took from the ledger's sequence (consent_subjects reserves one in
    its lookup), saving the round trip that takes one here. `companion`: see _ledger_write.
    """
    _choice(action, ConsentEvent.Action.choices, "操作（action）")
    _choice(method, ConsentEvent.Method.choices, "方式（method）")
    _choice(channel, ConsentEvent.Channel.choices, "経路（channel）")
    visitor_id = (visitor_id or "").strip()
    if customer is None and not visitor_id:
        raise ValidationError("顧客または訪問者IDのいずれかを指定してください。")
    if len(visitor_id) > 64:
        raise ValidationError("訪問者IDは64文字以内で指定してください。")
    if purpose is None or purpose.code != purpose_code or not purpose.is_published:
        # `purpose`: the caller's own lookup of this code (consent.selectors.consent_subjects), if any.
        purpose = selectors.published_purpose(purpose_code)
    if purpose is None:
        raise ValidationError(
            f"利用目的「{purpose_code}」は登録されていないか、公表されていません（法第21条）。"
        )
    error = rules.grant_method_error(category=purpose.category, action=action, method=method)
    if error:
        raise ValidationError(error)
    now = timezone.now()
    occurred_at = occurred_at or now
    if timezone.is_naive(occurred_at):
        raise ValidationError("同意・撤回の日時にはタイムゾーンを含めてください。")
    if occurred_at > now + FUTURE_TOLERANCE:
        raise ValidationError("同意・撤回の日時に未来の日時は指定できません。")
    version = cast(PurposeVersion, purpose.current_version)  # a purpose is created with its first version
    proof = _evidence(evidence, version)
    if proof["operator"] is None and getattr(actor, "is_authenticated", False):
        # Staff-entered consent (paper, store, call centre, admin): the operator is the acting user.
        proof["operator"] = actor

    if customer is None:
        link = VisitorLink.objects.filter(visitor_id=visitor_id).select_related("customer").first()
        customer = link.customer if link else None
    if customer is not None and customer.status == Customer.Status.ANONYMISED:
        raise ValidationError("匿名化済みの顧客には同意を記録できません。")
    # Every refusal is above: the ledger row, its audit entry and the current state are one statement,
    # which succeeds or fails whole, in the caller's transaction if it holds one.
    with _acting(actor):
        event = ConsentEvent(
            id=event_id,
            customer=customer,
            visitor_id=visitor_id,
            purpose=purpose,
            purpose_version=version,
            action=action,
            method=method,
            channel=channel,
            api_client_id=api_client_id,
            occurred_at=occurred_at,
            **proof,
        )
        _ledger_write(event, version.version, companion)
    return event


STATE_REBUILD_SQL = """
INSERT INTO consent_consentstate (customer_id, purpose_id, granted, event_id, version, channel, occurred_at)
SELECT DISTINCT ON (e.customer_id, e.purpose_id)
       e.customer_id, e.purpose_id, e.action = 'grant', e.id, v.version, e.channel, e.occurred_at
FROM consent_consentevent e
JOIN consent_purposeversion v ON v.id = e.purpose_version_id
-- An erased customer's rows stay in the ledger, naming nobody: no state is made up for them.
JOIN crm_customer c ON c.id = e.customer_id
WHERE e.customer_id IS NOT NULL {extra}
ORDER BY e.customer_id, e.purpose_id, e.occurred_at DESC, e.id DESC
ON CONFLICT (customer_id, purpose_id) DO UPDATE SET
    granted = EXCLUDED.granted, event_id = EXCLUDED.event_id, version = EXCLUDED.version,
    channel = EXCLUDED.channel, occurred_at = EXCLUDED.occurred_at
WHERE (consent_consentstate.occurred_at, consent_consentstate.event_id)
    IS DISTINCT FROM (EXCLUDED.occurred_at, EXCLUDED.event_id)
"""


def consent_state_rebuild(*, customer_ids: list[int] | None = None) -> int:
    """Recompute current states from the ledger (after a bulk load, or to repair): the ledger is the truth.

    Only rows that differ are written. Returns the number of state rows inserted or corrected.
    """
    extra, params = ("AND e.customer_id = ANY(%s)", [customer_ids]) if customer_ids is not None else ("", [])
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(STATE_REBUILD_SQL.format(extra=extra), params)
        return cur.rowcount


def consent_grant(*, customer: Customer, purpose_code: str, channel: str, **kwargs: Any) -> ConsentEvent:
    """Record an express opt-in consent (shorthand of consent_record)."""
    return consent_record(
        purpose_code=purpose_code,
        action=ConsentEvent.Action.GRANT,
        method=ConsentEvent.Method.OPT_IN,
        channel=channel,
        customer=customer,
        **kwargs,
    )


def consent_withdraw(*, customer: Customer, purpose_code: str, channel: str, **kwargs: Any) -> ConsentEvent:
    """Record a withdrawal (GDPR Art. 7(3): as easy as giving it) — one call, like consent_grant."""
    return consent_record(
        purpose_code=purpose_code,
        action=ConsentEvent.Action.WITHDRAW,
        method=ConsentEvent.Method.OPT_OUT,
        channel=channel,
        customer=customer,
        **kwargs,
    )


def visitor_link(*, visitor_id: str, customer: Customer, actor: User | None = None) -> int:
    """Link an anonymous visitor id to the identified customer and carry its consents over.

    The visitor's ledger rows are not touched: each is copied as a new row for the customer that points
    back at it (`source_event`), with the original occurred_at, and the customer's state is updated with
    the usual newer-wins rule. Safe to run twice (already copied rows are skipped). Returns rows copied.
    """
    visitor_id = (visitor_id or "").strip()
    if not visitor_id or len(visitor_id) > 64:
        raise ValidationError("訪問者IDは1〜64文字で指定してください。")
    if customer.status == Customer.Status.ANONYMISED:
        raise ValidationError("匿名化済みの顧客には紐付けできません。")
    with transaction.atomic(), _acting(actor):
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO consent_visitorlink (visitor_id, customer_id, linked_by_id, linked_at) "
                "VALUES (%s, %s, %s, now()) ON CONFLICT (visitor_id) DO NOTHING",
                [visitor_id, customer.pk, actor.pk if actor is not None and actor.pk else None],
            )
            inserted = cur.rowcount == 1
        link = VisitorLink.objects.select_for_update().get(visitor_id=visitor_id)
        if inserted:
            # The race-safe INSERT above bypasses the ORM; send the signal it would have sent so auditlog
            # records the link (visitor id masked by the registry) like any other create.
            post_save.send(
                sender=VisitorLink,
                instance=link,
                created=True,
                raw=False,
                using=link._state.db,
                update_fields=None,
            )
        if link.customer_id != customer.pk:
            raise ValidationError("この訪問者IDは既に別の顧客に紐付けられています。")
        visitor_rows = ConsentEvent.objects.filter(visitor_id=visitor_id, customer__isnull=True)
        copied = set(
            ConsentEvent.objects.filter(customer=customer, source_event__in=visitor_rows).values_list(
                "source_event_id", flat=True
            )
        )
        count = 0
        for row in visitor_rows.select_related("purpose_version").order_by("occurred_at", "id"):
            if row.pk in copied:
                continue
            event = ConsentEvent(
                customer=customer,
                visitor_id=visitor_id,
                purpose_id=row.purpose_id,
                purpose_version_id=row.purpose_version_id,
                action=row.action,
                method=row.method,
                channel=row.channel,
                form_id=row.form_id,
                text_hash=row.text_hash,
                source_ip=row.source_ip,
                user_agent=row.user_agent,
                operator_id=row.operator_id,
                api_client_id=row.api_client_id,
                source_event=row,
                occurred_at=row.occurred_at,
            )
            event.save(force_insert=True)
            _state_apply(event, row.purpose_version.version)
            count += 1
    return count


# --- erasure of the evidence ----------------------------------------------------------------------------


def evidence_key() -> bytes:
    """Key of the evidence hashes: CONSENT_EVIDENCE_KEY when set, else a sub-key of BLIND_INDEX_KEY.

    Derived under its own label, so an evidence hash never equals a blind index or a tombstone hash. Showing
    later that some evidence matches an erased row needs the key that was in force at the erasure.
    """
    own = getattr(settings, "CONSENT_EVIDENCE_KEY", "")
    if own:
        return own.encode()
    return hmac.new(settings.BLIND_INDEX_KEY.encode(), b"consent-evidence-v1", hashlib.sha256).digest()


# The person's rows: their own, and the anonymous visitor rows of a cookie id linked to them (the link still
# exists: erasure calls this before it deletes the customer's linked rows).
_PERSONS_VISITOR_IDS_SQL = """
SELECT visitor_id FROM consent_visitorlink WHERE customer_id = ANY(%(ids)s)
UNION
SELECT visitor_id FROM consent_consentevent WHERE customer_id = ANY(%(ids)s) AND visitor_id <> ''
"""
_PERSONS_ROWS_SQL = f"""
SELECT e.id, e.source_ip, e.user_agent, e.visitor_id FROM consent_consentevent e
WHERE e.erased_at IS NULL AND e.id IN (
    SELECT id FROM consent_consentevent WHERE customer_id = ANY(%(ids)s)
    UNION ALL
    SELECT v.id FROM consent_consentevent v
    WHERE v.customer_id IS NULL AND v.visitor_id IN ({_PERSONS_VISITOR_IDS_SQL})
)
ORDER BY e.id
FOR UPDATE
"""  # noqa: S608  (constant text)

# The one UPDATE the ledger's trigger lets through (consent migration 0006 says why and on which terms).
_EVIDENCE_ERASE_SQL = """
UPDATE consent_consentevent e
SET source_ip = '', user_agent = '', visitor_id = '', evidence_hash = v.hash, erased_at = %s
FROM unnest(%s::bigint[], %s::text[]) AS v(id, hash)
WHERE e.id = v.id AND e.erased_at IS NULL
"""


def _evidence_clear_value(field_name: str, stored: str) -> str:
    """The clear value of an encrypted evidence column; a token no key opens is hashed as it is stored
    (it is unreadable already, and the hash still pins what was there)."""
    field = cast("EncryptedCharField", ConsentEvent._meta.get_field(field_name))  # an encrypted column
    try:
        return field.from_db_value(stored, None, connection) or ""
    except DecryptionError:
        return f"undecryptable:{stored}"


def consent_evidence_erase(*, customer_ids: list[int], action: str, reason: str, actor: User | None) -> int:
    """Erase the personal evidence of the customers' ledger rows; the rows stay as proof of consent.

    The erasure participant of the consent app (registered in ConsentConfig.ready with the retention
    engine): `customer_erase` / `customer_anonymise` call it in their transaction for the ids they act on.
    Behavioural events recorded under the person's cookie ids before they were identified go the way of
    their own events (crm.retention.services.visitor_events_erase). For every ledger row of the person —
    their own and the anonymous visitor rows of a cookie id linked to them — the source address, user agent
    and cookie id are emptied, a keyed hash of them is kept
    (rules.evidence_hash) and `erased_at` is set, through the one UPDATE the database trigger allows under
    the `consent.evidence_erasure` session setting (on for that statement only). Purpose, version, action
    and times are untouched. One audit entry per call (ids and field names, no values). Returns ledger rows
    and events changed; rows already erased are left as they are (a second call changes nothing).
    """
    ids = sorted({int(i) for i in customer_ids})
    if not ids:
        return 0
    now = timezone.now()
    key = evidence_key()
    with transaction.atomic(), connection.cursor() as cur:
        # The person's cookie ids reach their anonymous events too (recorded before they were identified).
        cur.execute(_PERSONS_VISITOR_IDS_SQL, {"ids": ids})
        events = visitor_events_erase(visitor_ids=[r[0] for r in cur.fetchall()], action=action)
        cur.execute(_PERSONS_ROWS_SQL, {"ids": ids})
        rows = cur.fetchall()
        if not rows and not events:
            return 0
        row_ids = [r[0] for r in rows]
        hashes = [
            rules.evidence_hash(
                key,
                source_ip=_evidence_clear_value("source_ip", ip),
                user_agent=_evidence_clear_value("user_agent", ua),
                visitor_id=visitor,
            )
            for _id, ip, ua, visitor in rows
        ]
        changed = 0
        if row_ids:
            cur.execute("SELECT set_config('consent.evidence_erasure', 'on', true)")
            try:
                cur.execute(_EVIDENCE_ERASE_SQL, [now, row_ids, hashes])
                changed = cur.rowcount
            finally:
                # Off again at once: nothing else in this transaction may use the opening.
                cur.execute("SELECT set_config('consent.evidence_erasure', 'off', true)")
        _audit_evidence_erased(
            ids=ids, rows=changed, events=events, action=action, reason=reason, actor=actor
        )
    return changed + events


def _audit_evidence_erased(
    *, ids: list[int], rows: int, events: int, action: str, reason: str, actor: User | None
) -> None:
    """One summary entry per call: set-based SQL is not seen by auditlog's signals."""
    AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(ConsentEvent),
        object_pk=f"consent-evidence-erasure:{ids[0]}-{ids[-1]}",
        object_repr=f"同意台帳の証跡 {rows}件（顧客 {len(ids)}件）",
        action=AuditEntry.Action.UPDATE,
        changes={name: [REDACTED, ""] for name in ("source_ip", "user_agent", "visitor_id")},
        actor=actor if getattr(actor, "pk", None) else None,
        additional_data={
            "consent_evidence_erasure": {
                "action": action,
                "reason": reason[:64],
                "rows": rows,
                "visitor_events": events,
                "customer_ids": ids,
            }
        },
    )


# --- 要配慮個人情報 ------------------------------------------------------------------------------------


def special_care_record_create(
    *,
    customer: Customer,
    purpose_code: str,
    kind: str,
    content: str,
    actor: User | None = None,
) -> SpecialCareRecord:
    """Store 要配慮個人情報 about a customer — refused unless their current consent for the special-care
    purpose `purpose_code` is granted (APPI Art. 20(2): acquisition needs the person's prior consent)."""
    _choice(kind, SpecialCareRecord.Kind.choices, "種類")
    if not content.strip():
        raise ValidationError("内容を入力してください。")
    purpose = Purpose.objects.filter(code=purpose_code).first()
    if purpose is None or purpose.category != PurposeCategory.SPECIAL_CARE:
        raise ValidationError(
            f"利用目的「{purpose_code}」は要配慮個人情報の取得を目的とするものではありません。"
        )
    with transaction.atomic(), _acting(actor):
        # Lock the state row: a withdrawal committing meanwhile must not let the write through.
        state = (
            ConsentState.objects.select_for_update()
            .filter(customer=customer, purpose=purpose, granted=True)
            .first()
        )
        if state is None:
            raise ValidationError(
                "要配慮個人情報は、本人の同意の記録がなければ登録できません（個人情報保護法第20条第2項）。"
            )
        record = SpecialCareRecord(
            customer=customer,
            purpose=purpose,
            consent_event_id=state.event_id,
            kind=kind,
            content=content.strip(),
            recorded_by=actor if getattr(actor, "pk", None) else None,
        )
        record.full_clean()
        record.save()
    return record


# --- objections (GDPR Art. 21) -------------------------------------------------------------------------


def _moment(occurred_at: dt.datetime | None, label: str) -> dt.datetime:
    now = timezone.now()
    occurred_at = occurred_at or now
    if timezone.is_naive(occurred_at):
        raise ValidationError(f"{label}にはタイムゾーンを含めてください。")
    if occurred_at > now + FUTURE_TOLERANCE:
        raise ValidationError(f"{label}に未来の日時は指定できません。")
    return occurred_at


def objection_record(
    *,
    customer: Customer,
    scope: str,
    source: str,
    purpose_code: str = "",
    occurred_at: dt.datetime | None = None,
    actor: User | None = None,
    api_client_id: int | None = None,
) -> Objection:
    """Record the person's objection (GDPR Art. 21): one append-only row; from then on usable_for leaves
    them out of the purpose (`scope=purpose`, a legitimate-interest purpose, Art. 21(1)) or of every
    direct-marketing purpose whatever its basis (`scope=direct_marketing`, Art. 21(2)–(3)).

    Refused (ValidationError, nothing written): an objection to a consent purpose (withdraw the consent,
    Art. 7(3)), to a contract or legal-obligation purpose (not open to objection; stop-use under APPI
    Art. 35 is the request for those), an unknown purpose, an anonymised customer, a future time. Safe to
    repeat: while the same objection stands, the standing row is returned and nothing is added.
    """
    _choice(scope, Objection.Scope.choices, "対象（scope）")
    _choice(source, Objection.Source.choices, "受付経路（source）")
    occurred_at = _moment(occurred_at, "異議の日時")
    purpose = None
    if scope == Objection.Scope.PURPOSE:
        purpose = Purpose.objects.filter(code=purpose_code).first() if purpose_code else None
        if purpose is None:
            raise ValidationError({"purpose_code": f"利用目的「{purpose_code}」は登録されていません。"})
        if purpose.legal_basis == LegalBasis.CONSENT:
            raise ValidationError(
                {
                    "purpose_code": "同意に基づく利用目的には、異議ではなく同意の撤回で対応します"
                    "（GDPR第7条3項）。"
                }
            )
        if purpose.legal_basis != LegalBasis.LEGITIMATE_INTEREST:
            raise ValidationError(
                {
                    "purpose_code": "異議の対象は正当な利益に基づく利用目的です（GDPR第21条1項）。"
                    "この利用目的の停止は利用停止等の請求（法第35条）で受け付けます。"
                }
            )
    elif purpose_code:
        raise ValidationError(
            {"purpose_code": "ダイレクトマーケティング全体への異議に利用目的は指定しません。"}
        )
    with transaction.atomic(), _acting(actor):
        # Serialise objections of one customer, so that two identical requests leave one row.
        locked = Customer.objects.select_for_update().filter(pk=customer.pk).values_list("status", flat=True)
        status = locked.first()
        if status is None:
            raise ValidationError("顧客が見つかりません。")
        if status == Customer.Status.ANONYMISED:
            raise ValidationError("匿名化済みの顧客には異議を記録できません。")
        standing = selectors.standing_objection_of(customer_id=customer.pk, scope=scope, purpose=purpose)
        if standing is not None:
            return standing
        objection = Objection(
            customer_id=customer.pk,
            kind=Objection.Kind.OBJECTION,
            scope=scope,
            purpose=purpose,
            source=source,
            operator=actor if getattr(actor, "is_authenticated", False) else None,
            api_client_id=api_client_id,
            occurred_at=occurred_at,
        )
        objection.full_clean()
        objection.save()
    return objection


def objection_decide_compelling_grounds(
    *,
    objection: Objection,
    reason: str,
    actor: User,
    occurred_at: dt.datetime | None = None,
) -> Objection:
    """Record the privacy officer's decision that compelling legitimate grounds override an objection to one
    purpose (GDPR Art. 21(1) second sentence): a new row answering it; the customer is usable for the purpose
    again until they object anew. Needs consent.decide_objection (PermissionDenied otherwise) and a reason.
    An objection to direct marketing cannot be overridden (Art. 21(3)); nor can a decision, or an objection
    already answered (ValidationError, nothing written).
    """
    if not actor.has_perm("consent.decide_objection"):
        raise PermissionDenied("異議への判断は個人情報保護管理者のみが記録できます。")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "やむを得ない正当な根拠の内容を記録してください（GDPR第21条1項）。"})
    if len(reason) > 2000:
        raise ValidationError({"reason": "理由は2000文字以内で記録してください。"})
    occurred_at = _moment(occurred_at, "判断の日時")
    with transaction.atomic(), _acting(actor):
        target = Objection.objects.select_for_update().filter(pk=objection.pk).first()
        if target is None or target.kind != Objection.Kind.OBJECTION:
            raise ValidationError("判断の対象は記録済みの異議に限られます。")
        if target.scope == Objection.Scope.DIRECT_MARKETING:
            raise ValidationError(
                "ダイレクトマーケティングへの異議は絶対的で、判断により覆すことはできません（GDPR第21条3項）。"
            )
        if Objection.objects.filter(answers=target).exists():
            raise ValidationError("この異議には既に判断が記録されています。")
        decision = Objection(
            customer_id=target.customer_id,
            kind=Objection.Kind.COMPELLING_GROUNDS,
            scope=target.scope,
            purpose_id=target.purpose_id,
            answers=target,
            source=Objection.Source.ADMIN,
            reason=reason,
            operator=actor,
            occurred_at=occurred_at,
        )
        decision.full_clean()
        decision.save()
    return decision
