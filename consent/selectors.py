"""Reads of the consent app. Queries acting for a user start from the gate: `<Model>.objects.restrict(user,
action)` (the consent models' querysets declare their customer, crm.permissions.RestrictedQuerySet)."""

from __future__ import annotations

import datetime as dt
import functools
from typing import TYPE_CHECKING, Any, NamedTuple

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import TruncMonth
from django.utils import timezone

from consent import rules
from consent.models import ConsentEvent, ConsentState, Objection, Purpose, PurposeVersion
from crm import rawsql
from crm.models import Customer
from crm.selectors import CUSTOMER_REF_FIELDS, customer_ref_load, customer_ref_query

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

    from crm.models import CustomerQuerySet

StateMap = dict[str, dict[str, Any]]


CONSENT_STATE_SQL = """
SELECT p.code, s.granted, s.version, s.occurred_at, s.channel
FROM consent_consentstate s JOIN consent_purpose p ON p.id = s.purpose_id
WHERE s.customer_id = %s
"""


@functools.cache
def _published_purpose_sql() -> str:
    return (
        f"SELECT {rawsql.columns(Purpose, 'p')}, {rawsql.columns(PurposeVersion, 'v')}"  # noqa: S608
        f' FROM "{Purpose._meta.db_table}" p JOIN "{PurposeVersion._meta.db_table}" v'
        " ON v.id = p.current_version_id WHERE p.code = %s AND p.is_published"
    )


def published_purpose(code: str) -> Purpose | None:
    """The published purpose with this code and its current version loaded, or None (unknown, unpublished or
    without wording). One constant statement: every consent write asks it (crm.rawsql)."""
    row = rawsql.fetch_one(_published_purpose_sql(), [code])
    if row is None:
        return None
    purpose = rawsql.load(Purpose, row)
    purpose.current_version = rawsql.load(PurposeVersion, row, rawsql.width(Purpose))
    return purpose


# The next ledger id, taken before the row is written: its audit entry names it (services._ledger_write).
NEXT_EVENT_ID_SQL = f"nextval(pg_get_serial_sequence('{ConsentEvent._meta.db_table}', 'id'))"


class ConsentSubjects(NamedTuple):
    customer: Customer | None
    purpose: Purpose | None
    event_id: int | None  # reserved from the ledger's sequence when asked for (consent_record(event_id=))


def consent_subjects(
    *,
    user: User | AnonymousUser,
    team_id: int,
    external_id: str,
    purpose_code: str,
    action: str = "change",
    reserve_event_id: bool = False,
) -> ConsentSubjects:
    """customer_ref(user, team_id, external_id) and published_purpose(purpose_code) in one round trip: what
    every consent write through the API looks up first. Each is None when not found (or not reachable
    by `user`). With `reserve_event_id`, the same statement also takes the id of the ledger row about to be
    written (an unused one is a gap in the sequence, as a rolled-back insert leaves).
    """
    query = customer_ref_query(user=user, team_id=team_id, external_id=external_id, action=action)
    if query is None:
        return ConsentSubjects(None, published_purpose(purpose_code), None)
    customer_sql, params = query
    reserve = f", {NEXT_EVENT_ID_SQL}" if reserve_event_id else ""
    row = rawsql.fetch_one(
        f"SELECT c.*, pp.*{reserve} FROM (SELECT 1) AS one"  # noqa: S608
        f" LEFT JOIN LATERAL ({customer_sql}) c ON true"
        f" LEFT JOIN LATERAL ({_published_purpose_sql()}) pp ON true",
        [*params, purpose_code],
    )
    assert row is not None  # the outer row always exists
    event_id = int(row[-1]) if reserve_event_id else None
    width = len(CUSTOMER_REF_FIELDS)
    customer = customer_ref_load(row) if row[0] is not None else None
    purpose_row = row[width:]
    if purpose_row[0] is None:
        return ConsentSubjects(customer, None, event_id)
    purpose = rawsql.load(Purpose, purpose_row)
    purpose.current_version = rawsql.load(PurposeVersion, purpose_row, rawsql.width(Purpose))
    return ConsentSubjects(customer, purpose, event_id)


def consent_state(*, customer: Customer) -> StateMap:
    """Current consent of one customer, per purpose code: one query on the state table's unique index.

    {code: {"granted": bool, "version": int, "at": datetime, "channel": str}}. Purposes never answered by
    the customer are absent (treat as not granted). Hand-written SQL on purpose: the cookie banner and the
    API call this on every request, and building the equivalent ORM query costs more than running it
    (bench/consent_bench.py).
    """
    with connection.cursor() as cur:
        cur.execute(CONSENT_STATE_SQL, [customer.pk])
        rows = cur.fetchall()
    return {
        code: {"granted": granted, "version": version, "at": at, "channel": channel}
        for code, granted, version, at, channel in rows
    }


def visitor_consent_state(*, visitor_id: str) -> StateMap:
    """Current consent of an anonymous visitor: the latest ledger row per purpose (DISTINCT ON over the
    visitor's few rows, on the (visitor_id, purpose, occurred_at, id) index)."""
    if not visitor_id:
        return {}
    rows = (
        ConsentEvent.objects.filter(visitor_id=visitor_id)
        .order_by("purpose_id", "-occurred_at", "-id")
        .distinct("purpose_id")
        .values_list("purpose__code", "action", "purpose_version__version", "occurred_at", "channel")
    )
    return {
        code: {
            "granted": action == ConsentEvent.Action.GRANT,
            "version": version,
            "at": at,
            "channel": channel,
        }
        for code, action, version, at, channel in rows
    }


def consent_state_at(*, customer: Customer, purpose_code: str, at: dt.datetime) -> bool:
    """Whether the customer had granted `purpose_code` at instant `at` (from the ledger: for proofs)."""
    last = (
        ConsentEvent.objects.filter(customer_id=customer.pk, purpose__code=purpose_code, occurred_at__lte=at)
        .order_by("-occurred_at", "-id")
        .values_list("action", flat=True)
        .first()
    )
    return last == ConsentEvent.Action.GRANT


def _purpose_for_selection(purpose_code: str) -> tuple[int, bool, str, str]:
    """(id, published, legal basis, category) of a purpose. An unknown code is an error: a typo in a segment
    or a campaign must not silently select nobody."""
    row = (
        Purpose.objects.filter(code=purpose_code)
        .values_list("pk", "is_published", "legal_basis", "category")
        .first()
    )
    if row is None:
        raise ValidationError(f"利用目的「{purpose_code}」は登録されていません。")
    return row


def consented_to(qs: CustomerQuerySet, purpose_code: str) -> CustomerQuerySet:
    """Narrow `qs` to customers whose current consent to `purpose_code` is granted — the consent-only
    question, where consent itself is what is asked (proof of consent, 要配慮 acquisition, APPI 27/28).

    To select people for a use (analytics, segments, exports, e-mail) ask usable_for, which applies the
    purpose's lawful basis and the objections. Only active customers of a published purpose are returned:
    a customer in stop-use (APPI Art. 35), closed or anonymised never is. Unknown code → ValidationError.
    """
    purpose_id, published, _basis, _category = _purpose_for_selection(purpose_code)
    if not published:
        return qs.none()
    granted = ConsentState.objects.filter(purpose_id=purpose_id, granted=True, customer_id=OuterRef("pk"))
    return qs.filter(status=Customer.Status.ACTIVE).filter(Exists(granted))


def standing_objections(*, purpose_id: int, direct_marketing: bool) -> QuerySet[Objection]:
    """Objections (GDPR Art. 21) that stand against using the outer customer for this purpose: to the
    purpose itself, or — for a direct-marketing purpose — to direct marketing as a whole, with no recorded
    compelling-grounds decision answering them (a direct-marketing objection is never answered so).
    For an Exists() with OuterRef("pk") on customers."""
    answered = Objection.objects.filter(answers_id=OuterRef("pk"), kind=Objection.Kind.COMPELLING_GROUNDS)
    target = Q(scope=Objection.Scope.PURPOSE, purpose_id=purpose_id)
    if direct_marketing:
        target |= Q(scope=Objection.Scope.DIRECT_MARKETING)
    return (
        Objection.objects.filter(customer_id=OuterRef("pk"), kind=Objection.Kind.OBJECTION)
        .filter(target)
        .filter(~Exists(answered))
    )


def basis_change_needs_decision(*, purpose: Purpose, new_basis: str) -> bool:
    """True when moving `purpose` to `new_basis` leaves consent while consents to it stand: then the change
    needs a recorded decision (services.purpose_revise, the purpose admin form)."""
    return (
        rules.basis_weakened(purpose.legal_basis, new_basis)
        and ConsentState.objects.filter(purpose_id=purpose.pk, granted=True).exists()
    )


def standing_objection_of(*, customer_id: int, scope: str, purpose: Purpose | None) -> Objection | None:
    """The customer's standing (unanswered) objection of this scope and purpose, if any."""
    answered = Objection.objects.filter(answers_id=OuterRef("pk"), kind=Objection.Kind.COMPELLING_GROUNDS)
    return (
        Objection.objects.filter(
            customer_id=customer_id, kind=Objection.Kind.OBJECTION, scope=scope, purpose=purpose
        )
        .filter(~Exists(answered))
        .order_by("-id")
        .first()
    )


def objections_standing(*, customer: Customer) -> list[Objection]:
    """Every standing objection of one customer (for the API's consent state), with its purpose."""
    answered = Objection.objects.filter(answers_id=OuterRef("pk"), kind=Objection.Kind.COMPELLING_GROUNDS)
    return list(
        Objection.objects.filter(customer_id=customer.pk, kind=Objection.Kind.OBJECTION)
        .filter(~Exists(answered))
        .select_related("purpose")
    )


def purpose_bases(*, customer: Customer) -> dict[str, dict[str, Any]]:
    """Per published purpose: its lawful basis and article, whether a standing objection of the customer
    covers it, and what the person can do about it (consent.rules.person_rights), each with its article."""
    standing = objections_standing(customer=customer)
    objected_purposes = {o.purpose_id for o in standing if o.scope == Objection.Scope.PURPOSE}
    objected_marketing = any(o.scope == Objection.Scope.DIRECT_MARKETING for o in standing)
    answer = {}
    for purpose in Purpose.objects.filter(is_published=True).order_by("display_order", "code"):
        marketing = rules.is_direct_marketing(purpose.category)
        rights = rules.person_rights(basis=purpose.legal_basis, category=purpose.category)
        answer[purpose.code] = {
            "legal_basis": purpose.legal_basis,
            "article": rules.BASIS_ARTICLE.get(purpose.legal_basis, ""),
            "objected": purpose.pk in objected_purposes or (marketing and objected_marketing),
            "rights": [{"code": r, "article": rules.RIGHT_ARTICLE[r]} for r in rights],
        }
    return answer


# Statuses whose data is still kept for a legal obligation (held ones included: a legal hold keeps the
# record; erased customers have no row, anonymised ones no person).
_KEPT_FOR_OBLIGATION = (Customer.Status.ACTIVE, Customer.Status.CLOSED, Customer.Status.STOP_USE)


def usable_for(qs: CustomerQuerySet, purpose_code: str) -> CustomerQuerySet:
    """Narrow `qs` to customers who may be used for `purpose_code` now, by the purpose's lawful basis.

    The one rule every selection for use asks (analytics, segments, exports, e-mail); composes with
    restrict() in either order.

    - consent (GDPR 6(1)(a); APPI 18(1), 20(2), 27(1), 28(1) where consent is the basis): current consent
      granted;
    - contract (6(1)(b)): an active relationship (not closed, in stop-use or anonymised);
    - legitimate interest (6(1)(f)): active, and no standing objection to the purpose (Art. 21(1));
    - legal obligation (6(1)(c)): every customer whose data is kept for it, stop-use and closed ones
      included (APPI 35 and GDPR 17(3)(b) do not reach it);
    - whatever the basis, a direct-marketing purpose never selects someone who objected to direct
      marketing (Art. 21(3)); stop-use (APPI 35) excludes from everything but a legal obligation;
      anonymised and erased customers are never selected; an unpublished purpose selects nobody.
    Unknown code → ValidationError.
    """
    purpose_id, published, basis, category = _purpose_for_selection(purpose_code)
    if not published:
        return qs.none()
    if basis == rules.LEGAL_OBLIGATION:
        return qs.filter(status__in=_KEPT_FOR_OBLIGATION)
    qs = qs.filter(status=Customer.Status.ACTIVE)
    if basis == rules.CONSENT:
        granted = ConsentState.objects.filter(purpose_id=purpose_id, granted=True, customer_id=OuterRef("pk"))
        qs = qs.filter(Exists(granted))
    direct_marketing = rules.is_direct_marketing(category)
    if basis == rules.LEGITIMATE_INTEREST or direct_marketing:
        objected = standing_objections(purpose_id=purpose_id, direct_marketing=direct_marketing)
        qs = qs.filter(~Exists(objected))
    return qs


def withdrawn_since(purpose_code: str, days: int, as_of: dt.datetime | None = None) -> QuerySet[Any]:
    """Ids (values("customer_id")) of customers whose current state for `purpose_code` is withdrawn and
    whose withdrawal is at least `days` days old — the retention engine's "consent withdrawn" trigger.

    A later re-grant makes the state granted again, so the customer drops out. Unknown code → error.
    """
    purpose_id = Purpose.objects.filter(code=purpose_code).values_list("pk", flat=True).first()
    if purpose_id is None:
        raise ValidationError(f"利用目的「{purpose_code}」は登録されていません。")
    cutoff = rules.period_cutoff(as_of or timezone.now(), days)
    return ConsentState.objects.filter(purpose_id=purpose_id, granted=False, occurred_at__lt=cutoff).values(
        "customer_id"
    )


def published_purposes() -> QuerySet[Purpose]:
    """Purposes shown on the public page (APPI Arts. 21/32), with their current wording."""
    return (
        Purpose.objects.filter(is_published=True, current_version__isnull=False)
        .select_related("current_version")
        .order_by("display_order", "code")
    )


def purpose_versions(*, purpose: Purpose) -> QuerySet[PurposeVersion]:
    """Every version of a purpose, newest first (old wordings stay readable forever)."""
    return PurposeVersion.objects.filter(purpose=purpose).order_by("-version")


def consent_history(*, user: User | AnonymousUser, customer_id: int) -> QuerySet[ConsentEvent]:
    """A customer's ledger rows, newest first, if `user` may view them (else empty)."""
    return (
        ConsentEvent.objects.restrict(user, "view")
        .filter(customer_id=customer_id)
        .select_related("purpose", "purpose_version", "operator")
        .order_by("-occurred_at", "-id")
    )


def objection_history(*, user: User | AnonymousUser, customer_id: int) -> QuerySet[Objection]:
    """A customer's objections and the decisions answering them, newest first, if `user` may view them."""
    return (
        Objection.objects.restrict(user, "view")
        .filter(customer_id=customer_id)
        .select_related("purpose", "operator")
        .order_by("-occurred_at", "-id")
    )


def consent_events_visible(*, user: User | AnonymousUser) -> QuerySet[ConsentEvent]:
    """Ledger rows `user` may view (the gate: rows about customers they may view; visitor-only rows and
    rows of erased customers belong to no team, so the all-customers roles only)."""
    return ConsentEvent.objects.restrict(user, "view")


def consent_states_visible(*, user: User | AnonymousUser) -> QuerySet[ConsentState]:
    """Current-state rows `user` may view."""
    return ConsentState.objects.restrict(user, "view")


def opt_in_rate_by_month(months: list[dt.date]) -> dict[str, dict[str, float | None]]:
    """The KPI page's consent opt-in rate (crm.insights registers it): per purpose code and JST month, the
    share (%) of the decisions recorded for identified customers that month that were grants
    (grants / (grants + withdrawals)). One GROUP BY over the ledger."""
    if not months:
        return {}
    start = dt.datetime.combine(months[0], dt.time.min, tzinfo=rules.JST)
    rows = (
        ConsentEvent.objects.filter(occurred_at__gte=start, customer_id__isnull=False)
        .annotate(m=TruncMonth("occurred_at", tzinfo=rules.JST))
        .values("purpose__code", "m")
        .annotate(grants=Count("id", filter=Q(action=ConsentEvent.Action.GRANT)), decisions=Count("id"))
        .values_list("purpose__code", "m", "grants", "decisions")
    )
    out: dict[str, dict[str, float | None]] = {}
    for code, month, grants, decisions in rows:
        out.setdefault(code, {})[month.date().isoformat()] = round(100 * grants / decisions, 2)
    return out
