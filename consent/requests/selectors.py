"""Reads of the request desk. Everything starts from `DataSubjectRequest.objects.restrict(user, action)`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import TruncDate, TruncMonth
from django.utils import timezone

from consent.disclosure.models import DisclosurePackage
from consent.requests.models import DataSubjectRequest, RequestQuerySet, RequestState
from consent.rules import JST, REQUEST_RECORDS_KEEP_YEARS_DEFAULT, request_records_closed_before
from crm.crypto import email_index, name_index, phone_index
from crm.models import Customer
from crm.retention.models import RetentionPolicy

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

# The queue's "due soon" window.
DUE_SOON_DAYS = 3
MATCHES_SHOWN = 20


def requests_visible(*, user: User | AnonymousUser, action: str = "view") -> RequestQuerySet:
    return DataSubjectRequest.objects.restrict(user, action)


def today_jst() -> dt.date:
    return timezone.now().astimezone(JST).date()


def due_bucket(request: DataSubjectRequest, today: dt.date | None = None) -> str:
    """ "overdue", "soon" (within DUE_SOON_DAYS days) or "due" for an open request; "" for a closed one."""
    if not request.is_open or request.due_on is None:
        return ""
    today = today or today_jst()
    if request.due_on < today:
        return "overdue"
    if request.due_on <= today + dt.timedelta(days=DUE_SOON_DAYS):
        return "soon"
    return "due"


def due_bucket_q(bucket: str, today: dt.date | None = None) -> Q:
    """The queue filter of one bucket, on the indexed due date."""
    today = today or today_jst()
    soon = today + dt.timedelta(days=DUE_SOON_DAYS)
    return {
        "overdue": Q(due_on__lt=today),
        "soon": Q(due_on__gte=today, due_on__lte=soon),
        "due": Q(due_on__gt=soon),
    }[bucket]


@dataclass(frozen=True)
class Match:
    """One customer matching what the requester gave, and by which identifiers (names only)."""

    customer: Customer
    by: tuple[str, ...]


def request_matches(*, request: DataSubjectRequest, user: User | AnonymousUser) -> list[Match]:
    """Customers matching the requester's identifiers through the blind indexes (exact, indexed): zero, one
    or several, shown to the handler, who links the right one. Only customers the user may see."""
    keys: dict[str, Q] = {}
    if request.requester_email:
        keys["email"] = Q(email_bidx=email_index(request.requester_email))
    phone = phone_index(request.requester_phone) if request.requester_phone else None
    if phone:
        keys["phone"] = Q(phone_bidx=phone)
    if request.requester_name:
        name = name_index(request.requester_name)
        keys["name"] = Q(name_bidx=name) | Q(kana_bidx=name)
    if request.requester_member_no:
        keys["member_no"] = Q(member_no=request.requester_member_no)
    if not keys:
        return []
    any_key = Q()
    for q in keys.values():
        any_key |= q
    visible = Customer.objects.restrict(user, "view")
    found = list(visible.filter(any_key).order_by("pk")[:MATCHES_SHOWN])
    matches = []
    for customer in found:
        by = tuple(k for k, q in keys.items() if visible.filter(q, pk=customer.pk).exists())
        matches.append(Match(customer=customer, by=by))
    # The strongest first: more identifiers agreeing.
    return sorted(matches, key=lambda m: -len(m.by))


def request_records_keep_years() -> int:
    """REQUEST_RECORDS_KEEP_YEARS: how many years answered requests and their records are kept."""
    return int(getattr(settings, "REQUEST_RECORDS_KEEP_YEARS", REQUEST_RECORDS_KEEP_YEARS_DEFAULT))


def request_records_due(trigger: str, days: int, as_of: dt.datetime) -> list[QuerySet[DataSubjectRequest]]:
    """The answered requests a retention policy of scope "request_records" removes at `as_of` (crm.retention's
    record scope): completed or rejected ones whose keeping period (REQUEST_RECORDS_KEEP_YEARS after the JST
    day they were closed, consent.rules.request_records_keep_until) ended at least `days` days before the JST
    day of `as_of`. A request whose disclosure package is still building or downloadable waits for the
    packages' own policy. Only the trigger "period ended" applies."""
    if trigger != RetentionPolicy.Trigger.PERIOD_ENDED:
        raise ValueError(
            "開示等請求の記録には「記録ごとの法定保存期間の満了からN日経過」の契機のみ使えます"
            "（保存期間は設定 REQUEST_RECORDS_KEEP_YEARS）。"
        )
    day = as_of.astimezone(JST).date() - dt.timedelta(days=days)
    cutoff = request_records_closed_before(day, years=request_records_keep_years())
    live = DisclosurePackage.objects.filter(
        request=OuterRef("pk"),
        state__in=[DisclosurePackage.State.BUILDING, DisclosurePackage.State.READY],
    )
    answered = DataSubjectRequest.objects.filter(
        state__in=[RequestState.COMPLETED, RequestState.REJECTED], closed_at__lt=cutoff
    )
    return [answered.exclude(Exists(live))]


# The KPI series' one label (a language-neutral key: the KPI cache is shared by both languages).
ON_TIME_LABEL = "on_time"


def on_time_rate_by_month(months: list[dt.date]) -> dict[str, dict[str, float | None]]:
    """The KPI page's request-desk on-time rate (crm.insights registers it): per JST month of the answer,
    the share (%) of the requests completed or rejected that month whose answer day (JST) was on or before
    their binding due date (`due_on`: the nearest of the APPI internal limit and the GDPR date, extended only
    with a timely notice, as consent.rules.request_due_dates and gdpr_effective_due compute them). A month
    without answers has no value. One GROUP BY over the requests; totals only."""
    if not months:
        return {}
    start = dt.datetime.combine(months[0], dt.time.min, tzinfo=JST)
    rows = (
        DataSubjectRequest.objects.filter(
            state__in=(RequestState.COMPLETED, RequestState.REJECTED),
            closed_at__gte=start,
            due_on__isnull=False,
        )
        .annotate(m=TruncMonth("closed_at", tzinfo=JST), answered_on=TruncDate("closed_at", tzinfo=JST))
        .values("m")
        .annotate(answered=Count("id"), on_time=Count("id", filter=Q(answered_on__lte=F("due_on"))))
        .values_list("m", "answered", "on_time")
    )
    return {
        ON_TIME_LABEL: {
            month.date().isoformat(): round(100 * on_time / answered, 2) for month, answered, on_time in rows
        }
    }
