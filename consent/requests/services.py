"""Writes of the request desk (開示等請求). The only place that moves a request through its states.

Every function is one transaction on a row locked for it (a second handler's click waits and then sees the
new state), checks the gate (`DataSubjectRequest.objects.restrict(actor, "change")`) and lets django-fsm-2
refuse a move the state machine does not have. The fulfilment services (correction, stop-use, erasure,
completion) refuse until the requester's identity is verified. E-mails to the requester are sent after the
commit and each one is recorded on the request (RequestMessage).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_fsm import TransitionNotAllowed

from consent import rules
from consent import services as consent_services
from consent.disclosure.models import DisclosurePackage
from consent.models import Objection
from consent.requests import mail
from consent.requests.models import (
    FEE_KINDS,
    OPEN_STATES,
    OVERSEE_PERMISSION,
    DataSubjectRequest,
    ErasureAction,
    IdentityVerification,
    RequestCompletion,
    RequestKind,
    RequestMessage,
    RequestState,
)
from crm import services as crm_services
from crm.audit.actors import audit_actor
from crm.crypto import email_index
from crm.models import Customer, LegalHold
from crm.retention import rules as retention_rules
from crm.retention.services import customer_anonymise, customer_erase, tombstone_key

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.db.models import QuerySet

log = logging.getLogger(__name__)

CONFIRMATION_HOURS = 48

# Kinds each fulfilment serves.
CORRECTION_KINDS = (RequestKind.CORRECTION,)
STOP_USE_KINDS = (RequestKind.STOP_USE_ERASURE, RequestKind.RESTRICTION)
OBJECTION_KINDS = (RequestKind.OBJECTION,)
STOP_PROVISION_KINDS = (RequestKind.STOP_THIRD_PARTY,)
ERASURE_KINDS = (RequestKind.STOP_USE_ERASURE,)


class RequestError(ValidationError):
    """A request cannot move as asked (state, missing verification, missing approval)."""


def _acting(actor: User | None) -> Any:
    return audit_actor(actor)


@contextmanager
def _locked(
    request: DataSubjectRequest, actor: User | None, action: str = "change"
) -> Iterator[DataSubjectRequest]:
    """The request re-read under a row lock, through the gate for `actor` (None: the public form's own
    confirmation, which acts for nobody on staff). A request outside the gate looks like no request."""
    with transaction.atomic(), _acting(actor):
        rows = (
            DataSubjectRequest.objects.all()
            if actor is None
            else DataSubjectRequest.objects.restrict(actor, action)
        )
        locked = rows.select_for_update(of=("self",)).filter(pk=request.pk).first()
        if locked is None:
            raise PermissionDenied(_("この開示等請求を操作する権限がありません。"))
        yield locked


def _move(request: DataSubjectRequest, transition: str) -> None:
    try:
        getattr(request, transition)()
    except TransitionNotAllowed as exc:
        raise RequestError(
            _("現在の状態（%(state)s）からはこの操作はできません。") % {"state": request.get_state_display()}
        ) from exc


def _log(request: DataSubjectRequest, action: str, **facts: Any) -> None:
    """Append one step to the work log: names, counts, reasons and dates only, never values."""
    request.work_log = [*request.work_log, {"action": action, "at": timezone.now().isoformat(), **facts}]


def _require_verified(request: DataSubjectRequest) -> None:
    if request.identity_verified_at is None:
        raise RequestError(_("本人確認が完了するまで、請求に応じる操作はできません。"))
    if request.state != RequestState.IN_PROGRESS:
        raise RequestError(
            _("対応中の請求でのみ行えます（現在: %(state)s）。") % {"state": request.get_state_display()}
        )


def _require_kind(request: DataSubjectRequest, kinds: tuple[str, ...]) -> None:
    if request.kind not in kinds:
        raise RequestError(
            _("この種類の請求（%(kind)s）では行えない操作です。") % {"kind": request.get_kind_display()}
        )


def _linked_customer(request: DataSubjectRequest, actor: User, action: str = "view") -> Customer:
    if request.customer_id is None:
        raise RequestError(_("対象の顧客が紐付けられていません。"))
    customer = Customer.objects.restrict(actor, action).filter(pk=request.customer_id).first()
    if customer is None:
        raise PermissionDenied(_("この顧客を操作する権限がありません。"))
    return customer


@contextmanager
def _on_linked_customer(
    request: DataSubjectRequest, actor: User, kinds: tuple[str, ...]
) -> Iterator[tuple[DataSubjectRequest, Customer]]:
    """A fulfilment acting on the request's customer (correction, stop-use, stop-provision, objection): the
    request locked, its requester's identity verified and its kind one of `kinds`, the linked customer open
    to `actor`. The request (its work log) is saved when the step succeeds."""
    with _locked(request, actor) as locked:
        _require_verified(locked)
        _require_kind(locked, kinds)
        yield locked, _linked_customer(locked, actor)
        locked.save()


# --- intake ------------------------------------------------------------------------------------------------


def request_create(
    *,
    kind: str,
    channel: str,
    received_at: dt.datetime,
    actor: User | None,
    jurisdiction: str = "appi",
    language: str = "ja",
    disclosure_method: str = "",
    requester_name: str = "",
    requester_email: str = "",
    requester_phone: str = "",
    requester_member_no: str = "",
    details: str = "",
    handler: User | None = None,
    customer: Customer | None = None,
) -> DataSubjectRequest:
    """A request received by phone, letter, counter, e-mail or the integration API: it enters the queue at
    once, its clocks running from `received_at`. Validated whole (nothing written on an error). `customer`:
    one the caller's gate already opened to it (the API's client naming a customer of its team)."""
    request = DataSubjectRequest(
        kind=kind,
        channel=channel,
        received_at=received_at,
        jurisdiction=jurisdiction,
        language=language,
        disclosure_method=disclosure_method,
        requester_name=requester_name,
        requester_email=requester_email,
        requester_phone=requester_phone,
        requester_member_no=requester_member_no,
        details=details,
        handler=handler,
        customer=customer,
    )
    with transaction.atomic(), _acting(actor):
        request.full_clean(exclude=["state"])
        request.refresh_due_dates()
        _log(request, "received", channel=channel)
        request.save()
    return request


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def request_submit_public(
    *, email: str, kind: str, language: str, confirm_url: Callable[[str], str]
) -> DataSubjectRequest:
    """The public form (/privacy/requests/): an unconfirmed request and a confirmation link sent to `email`.

    It does not enter the queue until the link is followed (request_confirm). Nothing here looks the address
    up among customers: the page says the same whatever the address is."""
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    request = DataSubjectRequest(
        # Created unconfirmed: the protected state field takes its first value when the object is made.
        state=RequestState.UNCONFIRMED,
        kind=kind,
        channel="web_form",
        received_at=now,
        language=language,
        requester_email=email,
        confirmation_token_hash=_token_hash(token),
        confirmation_expires_at=now + dt.timedelta(hours=CONFIRMATION_HOURS),
    )
    with transaction.atomic(), _acting(None):
        request.full_clean(exclude=["state"])
        request.refresh_due_dates()
        _log(request, "submitted", channel="web_form")
        request.save()
        send_on_commit(
            request,
            RequestMessage.Kind.CONFIRMATION,
            actor=None,
            context={"link": confirm_url(token), "hours": CONFIRMATION_HOURS},
        )
    return request


def request_confirm(*, token: str) -> DataSubjectRequest | None:
    """The requester followed the link: control of the address is recorded as one verification step and the
    request enters the queue, its clocks running from the confirmation (the moment it reached the company
    as a request someone can answer). An unknown, used or expired token does nothing (None)."""
    if not token or len(token) > 100:
        return None
    now = timezone.now()
    candidate = DataSubjectRequest.objects.filter(
        confirmation_token_hash=_token_hash(token), state=RequestState.UNCONFIRMED
    ).first()
    if candidate is None:
        return None
    with _locked(candidate, None) as request:
        if request.state != RequestState.UNCONFIRMED or (
            request.confirmation_expires_at is not None and request.confirmation_expires_at < now
        ):
            return None
        _move(request, "confirm")
        request.confirmed_at = now
        request.received_at = now
        request.confirmation_token_hash = ""
        request.refresh_due_dates()
        _log(request, "confirmed")
        request.save()
        IdentityVerification.objects.create(
            request=request,
            method=IdentityVerification.Method.EMAIL_CONTROL,
            evidence_reference=_("確認リンク"),
            completes=False,
            verified_at=now,
        )
    return request


def requests_unconfirmed_purge(*, now: dt.datetime | None = None) -> int:
    """Delete form requests whose confirmation link expired unused (data minimisation: an address someone
    typed, perhaps not their own, is kept no longer than the link lives). Each deletion is audited by the
    ORM; the confirmation message rows go with their request. Safe to run twice."""
    now = now or timezone.now()
    expired = DataSubjectRequest.objects.filter(
        state=RequestState.UNCONFIRMED, confirmation_expires_at__lt=now
    ).order_by("pk")
    deleted = 0
    with _acting(None):
        for request in expired[:1000]:
            with transaction.atomic():
                request.delete()
            deleted += 1
    return deleted


# --- workflow ----------------------------------------------------------------------------------------------


def request_assign(*, request: DataSubjectRequest, handler: User, actor: User) -> DataSubjectRequest:
    """Give the request to a handler of the desk (someone who may work requests)."""
    if not handler.is_active or not handler.has_perm("consent.change_datasubjectrequest"):
        raise RequestError(_("担当者には開示等請求を扱える従業者を指定してください。"))
    return _set_while_open(
        request, actor, _("終了した請求の担当者は変更できません。"), "assigned", handler=handler
    )


def _set_while_open(
    request: DataSubjectRequest, actor: User, refusal: str, step: str, **fields: Any
) -> DataSubjectRequest:
    """Set `fields` on an open request (refused with `refusal` once it is closed), logging `step` with the
    ids set."""
    with _locked(request, actor) as locked:
        if not locked.is_open:
            raise RequestError(refusal)
        for name, value in fields.items():
            setattr(locked, name, value)
        _log(locked, step, **{f"{name}_id": value.pk for name, value in fields.items()})
        locked.save()
    return locked


def request_start_verification(*, request: DataSubjectRequest, actor: User) -> DataSubjectRequest:
    with _locked(request, actor) as locked:
        _move(locked, "start_verification")
        _log(locked, "verification_started")
        locked.save()
    return locked


def request_verify_identity(
    *, request: DataSubjectRequest, actor: User, method: str, evidence_reference: str = ""
) -> IdentityVerification:
    """Record the step that completes the identity check (who, how, on what evidence, when) and open the
    request to fulfilment."""
    if method == IdentityVerification.Method.EMAIL_CONTROL:
        raise RequestError(_("メールアドレスの確認だけでは本人確認を完了できません。"))
    with _locked(request, actor) as locked:
        step = IdentityVerification(
            request=locked,
            method=method,
            evidence_reference=evidence_reference,
            completes=True,
            verified_by=actor,
            verified_at=timezone.now(),
        )
        step.full_clean()
        if locked.state not in (RequestState.RECEIVED, RequestState.IDENTITY):
            raise RequestError(
                _("現在の状態（%(state)s）からはこの操作はできません。")
                % {"state": locked.get_state_display()}
            )
        step.save()
        locked.identity_verified_at = step.verified_at
        _move(locked, "start_work")
        _log(locked, "identity_verified", method=method)
        locked.save()
    return step


def request_link_customer(
    *, request: DataSubjectRequest, customer: Customer, actor: User
) -> DataSubjectRequest:
    """Link the customer the handler chose among the matches (the customer must be visible to them)."""
    if not Customer.objects.restrict(actor, "view").filter(pk=customer.pk).exists():
        raise PermissionDenied(_("この顧客を操作する権限がありません。"))
    return _set_while_open(
        request, actor, _("終了した請求の顧客は変更できません。"), "customer_linked", customer=customer
    )


def request_record_fee(*, request: DataSubjectRequest, amount: int, actor: User) -> DataSubjectRequest:
    """Record a fee charged (APPI Art. 38: only for a notice of purposes and for disclosure)."""
    with _locked(request, actor) as locked:
        _require_kind(locked, FEE_KINDS)
        if amount < 0 or amount > 100_000:
            raise RequestError(_("手数料の額が正しくありません。"))
        locked.fee_amount = amount
        locked.fee_charged_at = timezone.now()
        _log(locked, "fee_charged", amount=amount)
        locked.save()
    return locked


def request_extend(*, request: DataSubjectRequest, reason: str, actor: User) -> DataSubjectRequest:
    """Extend the GDPR deadline by two months (Art. 12(3)): only with a reason, and only while the notice to
    the requester, sent here, goes out before the original due date."""
    reason = reason.strip()
    if not reason:
        raise RequestError(_("延長には理由が必要です（GDPR第12条3項）。"))
    with _locked(request, actor) as locked:
        if locked.jurisdiction == "appi":
            raise RequestError(_("延長はGDPRが適用される請求でのみ行えます（GDPR第12条3項）。"))
        if not locked.is_open or locked.extension_notice_sent_at is not None:
            raise RequestError(_("この請求の期限は延長できません。"))
        if not locked.requester_email:
            raise RequestError(_("請求者のメールアドレスがないため、延長の通知を送れません。"))
        now = timezone.now()
        if not rules.extension_notice_is_timely(locked.due_dates(), now):
            raise RequestError(_("当初の期限を過ぎているため、延長できません（GDPR第12条3項）。"))
        locked.extension_reason = reason[:2000]
        locked.extension_notice_sent_at = now
        locked.refresh_due_dates()
        _log(locked, "extended", new_due=locked.due_on.isoformat() if locked.due_on else None)
        locked.save()
        send_on_commit(locked, RequestMessage.Kind.EXTENSION, actor=actor, context={"reason": reason})
    return locked


# --- fulfilment --------------------------------------------------------------------------------------------


def request_correct(*, request: DataSubjectRequest, actor: User, changes: dict[str, Any]) -> Customer:
    """訂正・追加・削除 (APPI Art. 34, GDPR Art. 16) through crm's validated customer service; the field names
    changed (never the values) go to the request's record."""
    if not changes:
        raise RequestError(_("訂正する項目がありません。"))
    with _on_linked_customer(request, actor, CORRECTION_KINDS) as (locked, customer):
        updated = crm_services.customer_update(customer=customer, actor=actor, **changes)
        _log(locked, "corrected", fields=sorted(changes))
    return updated


DISCLOSURE_KINDS = (RequestKind.PURPOSE_NOTICE, RequestKind.DISCLOSURE, RequestKind.PORTABILITY)


def request_record_disclosed(
    *, request: DataSubjectRequest, actor: User, what: list[str], reference: str = ""
) -> DataSubjectRequest:
    """Record what was disclosed (names of the parts, e.g. the package's tables, and a reference such as the
    package's id; never values) for the completion record. For the disclosure package to call when it is
    handed over; refused before the identity is verified."""
    with _locked(request, actor) as locked:
        _require_verified(locked)
        _require_kind(locked, DISCLOSURE_KINDS)
        _log(locked, "disclosed", what=sorted(str(w)[:100] for w in what)[:200], reference=reference[:100])
        locked.save()
    return locked


def request_stop_use(*, request: DataSubjectRequest, actor: User) -> Customer:
    """利用停止 (APPI Art. 35, GDPR Arts. 18/21) through crm's stop-use state: effective at once for every
    selection (consent.selectors.usable_for, consented_to)."""
    with _on_linked_customer(request, actor, STOP_USE_KINDS) as (locked, customer):
        stopped = crm_services.customer_stop_use(customer=customer, actor=actor)
        _log(locked, "stopped_use")
    return stopped


def request_stop_provision(*, request: DataSubjectRequest, actor: User) -> Customer:
    """第三者提供の停止 (APPI Art. 35(3)) through crm's provision-stopped fact: from the commit on, every
    provision to a third party naming the person is refused (consent.provision.services.provision_record).
    Refused before the identity is verified."""
    with _on_linked_customer(request, actor, STOP_PROVISION_KINDS) as (locked, customer):
        stopped = crm_services.customer_stop_provision(customer=customer, actor=actor)
        _log(locked, "stopped_provision")
    return stopped


def request_record_objection(
    *, request: DataSubjectRequest, actor: User, scope: str, purpose_code: str = ""
) -> Objection:
    """異議 (GDPR Art. 21) through the objection ledger, its source the request desk: to direct marketing it
    is absolute and effective at once for every marketing purpose (consent.selectors.usable_for)."""
    with _on_linked_customer(request, actor, OBJECTION_KINDS) as (locked, customer):
        objection = consent_services.objection_record(
            customer=customer,
            scope=scope,
            purpose_code=purpose_code,
            source=Objection.Source.REQUEST_DESK,
            actor=actor,
        )
        _log(locked, "objection_recorded", scope=scope, purpose_code=purpose_code)
    return objection


def request_ask_erasure_approval(
    *, request: DataSubjectRequest, action: str, actor: User
) -> DataSubjectRequest:
    """The handler asks a second person (a support lead or the privacy officer) to approve the erasure."""
    if action not in ErasureAction.values:
        raise RequestError(_("消去の方法を選んでください。"))
    with _locked(request, actor) as locked:
        _require_verified(locked)
        _require_kind(locked, ERASURE_KINDS)
        _linked_customer(locked, actor, "delete")
        _move(locked, "ask_approval")
        locked.erasure_action = action
        locked.approval_requested_by = actor
        locked.approved_by = None
        locked.approved_at = None
        _log(locked, "approval_requested", erasure_action=action)
        locked.save()
    return locked


def request_approve_erasure(*, request: DataSubjectRequest, approver: User) -> DataSubjectRequest:
    """Four-eyes: a support lead or the privacy officer, never the handler nor whoever asked, approves."""
    if not approver.has_perm(OVERSEE_PERMISSION):
        raise PermissionDenied(_("消去を承認できるのは開示等請求責任者または個人情報保護管理者です。"))
    with _locked(request, approver) as locked:
        if approver.pk in (locked.handler_id, locked.approval_requested_by_id):
            raise PermissionDenied(_("担当者・依頼者本人は消去を承認できません（二者による確認）。"))
        _move(locked, "return_to_work")
        locked.approved_by = approver
        locked.approved_at = timezone.now()
        _log(locked, "erasure_approved", approver_id=approver.pk)
        locked.save()
    return locked


def _hold_reasons(customer_id: int) -> list[str]:
    """The legal holds standing on the customer, by their reason (named in the answer and the record)."""
    standing = LegalHold.objects.active(timezone.now()).filter(customer_id=customer_id)
    return sorted(set(standing.values_list("reason", flat=True)))


def request_erase(*, request: DataSubjectRequest, actor: User) -> DataSubjectRequest:
    """消去・匿名化 (APPI Art. 35, GDPR Art. 17) through the one erasure path, gated by
    `Customer.objects.restrict(actor, "delete")`, only after the four-eyes approval. A legal hold keeps the
    customer untouched and is named in the record; purchases are kept unlinked (tax records)."""
    with _locked(request, actor) as locked:
        _require_verified(locked)
        _require_kind(locked, ERASURE_KINDS)
        if locked.approved_by_id is None or locked.approved_by_id in (actor.pk, locked.handler_id):
            raise PermissionDenied(_("消去には担当者以外の承認が必要です（二者による確認）。"))
        customer = _linked_customer(locked, actor, "delete")
        subject = retention_rules.subject_hash(tombstone_key(), customer.pk)
        holds = _hold_reasons(customer.pk)
        run = customer_anonymise if locked.erasure_action == ErasureAction.ANONYMISE else customer_erase
        outcome = run(customer_ids=[customer.pk], reason=f"request:{locked.pk}", actor=actor)
        if outcome.held:
            _log(locked, "erasure_held", subject_hash=subject, holds=holds)
        else:
            _log(
                locked,
                "erased" if locked.erasure_action == ErasureAction.ERASE else "anonymised",
                subject_hash=subject,
                kept=["purchases"],
            )
        locked.save()
    return locked


def _subject_hash(request: DataSubjectRequest) -> str:
    for step in request.work_log:
        if "subject_hash" in step:
            return str(step["subject_hash"])
    if request.customer_id is not None:
        return retention_rules.subject_hash(tombstone_key(), request.customer_id)
    return email_index(request.requester_email) if request.requester_email else ""


KEPT_BECAUSE = {
    "purchases": "法人税法: 帳簿書類の保存（7年）— 本人との紐付けを外して保存",
}


def _summary(request: DataSubjectRequest, note: str) -> dict[str, Any]:
    """What was disclosed, changed, erased, kept and why, with dates: from the work log (names only)."""
    log = request.work_log
    changed = sorted({f for s in log if s["action"] == "corrected" for f in s.get("fields", [])})
    erased = [s for s in log if s["action"] in ("erased", "anonymised")]
    held = [s for s in log if s["action"] == "erasure_held"]
    kept = [{"what": k, "why": KEPT_BECAUSE[k]} for s in erased for k in s.get("kept", [])]
    kept += [{"what": "customer", "why": ", ".join(s.get("holds", [])) or "legal hold"} for s in held]
    return {
        "kind": request.kind,
        "received_at": request.received_at.isoformat(),
        "identity_verified_at": request.identity_verified_at.isoformat()
        if request.identity_verified_at
        else None,
        "due": {
            "appi": request.appi_due.isoformat() if request.appi_due else None,
            "gdpr": request.gdpr_due.isoformat() if request.gdpr_due else None,
            "binding": request.due_on.isoformat() if request.due_on else None,
        },
        "disclosed": [s for s in log if s["action"] == "disclosed"],
        "changed": changed,
        "stopped_use": any(s["action"] == "stopped_use" for s in log),
        "stopped_provision": any(s["action"] == "stopped_provision" for s in log),
        "erased": [{"action": s["action"], "at": s["at"]} for s in erased],
        "kept": kept,
        "note": note,
        "steps": [{"action": s["action"], "at": s["at"]} for s in log],
    }


def _close(request: DataSubjectRequest, actor: User, note: str, kind: str) -> None:
    request.closed_at = timezone.now()
    _log(request, request.state)
    subject = _subject_hash(request)
    RequestCompletion.objects.create(
        request=request,
        subject_hash=subject,
        outcome=request.state,
        summary=_summary(request, note),
        recorded_by=actor,
    )
    request.save()
    # The legal holds that kept data from an erasure are named in the answer (GDPR 17(3), APPI 35).
    holds = sorted(
        {h for step in request.work_log if step["action"] == "erasure_held" for h in step["holds"]}
    )
    context = {"note": note, "hold_codes": holds, "kept_purchases": _erased(request)}
    send_on_commit(request, kind, actor=actor, context=context, then_forget=_customer_gone(request))


def _erased(request: DataSubjectRequest) -> bool:
    return any(s["action"] in ("erased", "anonymised") for s in request.work_log)


def _customer_gone(request: DataSubjectRequest) -> bool:
    """The person's data was erased (by this request, or by another path while it was open): once the answer
    is sent, the request forgets the requester too."""
    if _erased(request):
        return True
    return request.customer_id is not None and not Customer.objects.filter(pk=request.customer_id).exists()


def request_complete(*, request: DataSubjectRequest, actor: User, note: str = "") -> DataSubjectRequest:
    """Complete the request: the completion record is written and the result sent to the requester. After an
    erasure, the requester's identifiers are cleared from the request once the result is sent."""
    with _locked(request, actor) as locked:
        _require_verified(locked)
        if locked.kind in ERASURE_KINDS and locked.erasure_action and not _erased(locked):
            if not any(s["action"] == "erasure_held" for s in locked.work_log):
                raise RequestError(_("承認された消去がまだ実行されていません。"))
        if locked.kind in STOP_PROVISION_KINDS and not any(
            s["action"] == "stopped_provision" for s in locked.work_log
        ):
            raise RequestError(_("第三者提供の停止がまだ行われていません（法第35条第3項）。"))
        _move(locked, "complete")
        _close(locked, actor, note[:2000], RequestMessage.Kind.RESULT)
    return locked


def request_reject(
    *, request: DataSubjectRequest, actor: User, ground: str, explanation: str
) -> DataSubjectRequest:
    """Decline the request with a ground (APPI Art. 33(2), GDPR Arts. 12(5), 17(3)) and the explanation sent
    to the requester (APPI Art. 36)."""
    with _locked(request, actor) as locked:
        locked.rejection_ground = ground
        locked.rejection_explanation = explanation.strip()[:4000]
        locked.full_clean(exclude=["state"])
        _move(locked, "reject")
        _close(locked, actor, "", RequestMessage.Kind.REJECTION)
    return locked


def request_forget_requester(*, request_id: int) -> None:
    """Clear the requester's identifiers (after the result of an erasure was sent): the request and its
    completion record stay as proof, naming the person by keyed hash only."""
    with transaction.atomic():
        request = DataSubjectRequest.objects.select_for_update().get(pk=request_id)
        request.requester_name = ""
        request.requester_email = ""
        request.requester_phone = ""
        request.requester_member_no = ""
        request.details = ""
        request.save(
            update_fields=[
                "requester_name",
                "requester_email",
                "requester_phone",
                "requester_member_no",
                "details",
            ]
        )


# --- messages to the requester --------------------------------------------------------------------------


def send_on_commit(
    request: DataSubjectRequest,
    kind: str,
    *,
    actor: User | None,
    context: dict[str, Any],
    then_forget: bool = False,
) -> None:
    """Send the message `kind` to the requester once the transaction commits (never for a change that was
    rolled back), and record it on the request; `then_forget` clears the requester's identifiers after."""
    request_id, actor_id = request.pk, (actor.pk if actor is not None else None)

    def send() -> None:
        try:
            message_send(
                request_id=request_id, kind=kind, actor_id=actor_id, context=context, then_forget=then_forget
            )
        except Exception as exc:  # the change is committed: a mail outage must not turn it into an error page
            # The class only: an SMTP error's text can hold the address.
            log.warning("request %s: %s message not sent (%s)", request_id, kind, type(exc).__name__)

    transaction.on_commit(send)


def message_send(
    *, request_id: int, kind: str, actor_id: int | None, context: dict[str, Any], then_forget: bool = False
) -> RequestMessage | None:
    """Send one e-mail to the requester through Django's e-mail backend (EMAIL_URL) and record it: kind,
    language, subject, the address by keyed hash only, who and when. No address, no message."""
    request = DataSubjectRequest.objects.get(pk=request_id)
    address = request.requester_email
    if not address:
        return None
    subject, body = mail.render(request, kind, context)
    send_mail(subject, body, None, [address])
    with transaction.atomic():
        message = RequestMessage.objects.create(
            request_id=request_id,
            kind=kind,
            language=request.language,
            subject=subject[:200],
            recipient_hash=email_index(address),
            sent_by_id=actor_id,
            sent_at=timezone.now(),
        )
    if then_forget:
        request_forget_requester(request_id=request_id)
    return message


def request_records_remove(*, rows: QuerySet[DataSubjectRequest], actor: User | None) -> int:
    """Remove a batch of answered requests past their keeping period (the rows a retention run selected with
    consent.requests.selectors.request_records_due and locked): their package rows (expired or failed: no
    file left), completion records, then the requests with their verifications and messages. Each deletion
    is audited by django-auditlog (ids only). Returns the number of requests removed."""
    ids = list(rows.values_list("pk", flat=True))
    with _acting(actor):
        DisclosurePackage.objects.filter(request_id__in=ids).delete()
        RequestCompletion.objects.filter(request_id__in=ids).delete()
        _total, per_model = DataSubjectRequest.objects.filter(pk__in=ids).delete()
    return per_model.get(DataSubjectRequest._meta.label, 0)


def requests_erasure_step(*, customer_ids: list[int], action: str, reason: str, actor: User | None) -> int:
    """Erasure participant (crm.retention.participants): when a customer is erased or anonymised, requests
    answered earlier keep their record but lose the requester's identifiers (each save audited). Open
    requests keep them until answered: the answer must reach the person."""
    closed = DataSubjectRequest.objects.filter(customer_id__in=customer_ids).exclude(
        state__in=list(OPEN_STATES)
    )
    ids = list(closed.values_list("pk", flat=True))
    for request_id in ids:
        request_forget_requester(request_id=request_id)
    return len(ids)
