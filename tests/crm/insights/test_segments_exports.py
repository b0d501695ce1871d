"""Segments and their exports: membership through the gate, the lawful basis of the export's purpose (a
customer who withdrew, objected or is in stop-use is never exported), the purpose's columns, masking, the
audit entry, refusals, and the call of the provision recorder for a recipient."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from consent import services as consent_services
from consent.models import ConsentEvent, Objection
from crm import services as crm_services
from crm.analytics import eligibility
from crm.insights import hooks, rules, selectors, services
from crm.insights.models import Segment, SegmentExport
from crm.models import AuditEntry, Customer
from tests.crm.insights.scores import clv_fit_with
from tests.factories import CustomerFactory, UserFactory, rfm_score_for


def _consent(customer: Customer, action: str, purpose: str = "marketing_email") -> None:
    consent_services.consent_record(
        purpose_code=purpose,
        action=action,
        method=ConsentEvent.Method.OPT_IN,
        channel=ConsentEvent.Channel.WEB_FORM,
        customer=customer,
    )


def _rows(result: tuple[SegmentExport, object]) -> list[list[str]]:
    return list(result[1])  # type: ignore[call-overload]


@pytest.fixture
def tokyo(team):
    return Segment.objects.create(name="東京", filters={"prefectures": ["13"]})


@pytest.mark.django_db
def test_members_are_the_filters_among_the_customers_the_user_may_see(
    tokyo, team, other_team, teammate, outsider
):
    # given Tokyo and Osaka customers in the user's team and a Tokyo customer of another team
    mine = CustomerFactory(team=team, prefecture="13")
    CustomerFactory(team=team, prefecture="27")
    CustomerFactory(team=other_team, prefecture="13")
    # when the teammate and the outsider ask for the segment, then each sees their own team's Tokyo customers
    assert list(selectors.segment_members(user=teammate, segment=tokyo).values_list("pk", flat=True)) == [
        mine.pk
    ]
    assert selectors.segment_count(user=teammate, segment=tokyo) == (1, True)
    assert mine.pk not in selectors.segment_members(user=outsider, segment=tokyo).values_list("pk", flat=True)


@pytest.mark.django_db
def test_behaviour_filters_are_set_based_semi_joins(team, teammate):
    # given three customers: two purchases 10 days ago, one purchase 400 days ago, none
    now = timezone.now()
    frequent, lapsed, never = (CustomerFactory(team=team) for _ in range(3))
    for n, (customer, days) in enumerate(((frequent, 10), (frequent, 12), (lapsed, 400))):
        crm_services.purchase_record(
            team=team,
            customer=customer,
            order_no=f"SEG-{n}",
            amount=5000,
            channel="web_form",
            purchased_at=now - dt.timedelta(days=days),
        )
    crm_services.event_record(
        kind="page_view", occurred_at=now, customer=never, visitor_id="", properties={}, source="t"
    )

    def members(**filters: object) -> set[int]:
        segment = Segment(name="x", filters=filters)
        return set(selectors.segment_members(user=teammate, segment=segment).values_list("pk", flat=True))

    # then each filter selects exactly whom it says
    assert members(min_purchases=2) == {frequent.pk}
    assert members(max_purchases=1) == {lapsed.pk, never.pk}
    assert members(purchased_within_days=30) == {frequent.pk}
    assert members(not_purchased_within_days=365) == {lapsed.pk, never.pk}
    assert members(min_amount=10000) == {frequent.pk}
    assert members(event_kind="page_view", events_within_days=1) == {never.pk}


def test_filters_are_strict():
    # given filters of the wrong shape, then each is refused naming the key (never the value)
    for bad, key in (
        ({"prefectures": "13"}, "prefectures"),
        ({"teams": ["1"]}, "teams"),
        ({"min_purchases": "3"}, "min_purchases"),
        ({"min_purchases": True}, "min_purchases"),
        ({"min_purchases": -1}, "min_purchases"),
        ({"surname": ["山田"]}, "surname"),
    ):
        with pytest.raises(rules.SegmentFilterError, match=key):
            rules.SegmentFilters.parse(bad)


@pytest.mark.django_db
def test_export_leaves_out_whoever_withdrew_objected_or_stopped_use(tokyo, team, owner):
    # given five Tokyo customers of the owner's team: consent granted; granted then withdrawn; granted but
    # objecting to direct marketing; granted but in stop-use (APPI 35); never asked
    granted, withdrawn, objecting, stopped, _never = (
        CustomerFactory(team=team, prefecture="13") for _ in range(5)
    )
    for customer in (granted, withdrawn, objecting, stopped):
        _consent(customer, ConsentEvent.Action.GRANT)
    _consent(withdrawn, ConsentEvent.Action.WITHDRAW)
    consent_services.objection_record(
        customer=objecting, scope=Objection.Scope.DIRECT_MARKETING, source=Objection.Source.ADMIN
    )
    crm_services.customer_stop_use(customer=stopped, actor=owner)
    owner.user_permissions.add(*Permission.objects.filter(codename__in=["export_segment", "view_segment"]))
    owner = type(owner).objects.get(pk=owner.pk)
    # when the owner exports the segment for the marketing e-mail purpose (consent-based, direct marketing)
    export, rows = services.segment_export_personal(user=owner, segment=tokyo, purpose_code="marketing_email")
    lines = list(rows)
    # then only the customer who may be used for it now is in the file, and the record says one row
    assert [line[0] for line in lines[1:]] == [str(granted.pk)]
    assert export.row_count == 1
    # and the columns are the purpose's: the e-mail address, no name, phone or address
    assert lines[0] == ["id", "email"]
    # masked: the owner may not view personal data in clear
    assert lines[1][1].endswith("@example.com") and "***" in lines[1][1]
    # and the export is in the audit log with ids and counts only
    entry = AuditEntry.objects.get(object_pk=f"segment-export:{export.pk}")
    assert entry.action == AuditEntry.Action.ACCESS
    assert entry.additional_data["export"]["customer_ids"] == [granted.pk]
    assert entry.additional_data["export"]["count"] == 1
    assert granted.email not in str(entry.additional_data) + entry.object_repr


@pytest.mark.django_db
def test_a_withdrawal_while_the_file_streams_leaves_the_customer_out(tokyo, team, support_agent):
    # given two consenting customers and an export decided but not yet streamed
    first, second = (CustomerFactory(team=team, prefecture="13") for _ in range(2))
    for customer in (first, second):
        _consent(customer, ConsentEvent.Action.GRANT)
    support_agent.user_permissions.add(
        *Permission.objects.filter(codename__in=["export_segment", "view_segment"])
    )
    user = type(support_agent).objects.get(pk=support_agent.pk)
    _export, rows = services.segment_export_personal(user=user, segment=tokyo, purpose_code="marketing_email")
    # when the second withdraws before the rows are produced
    _consent(second, ConsentEvent.Action.WITHDRAW)
    lines = list(rows)
    # then the file holds the first only, in clear for the request desk (who may view personal data)
    assert [line[0] for line in lines[1:]] == [str(first.pk)]
    assert lines[1][1] == first.email


@pytest.mark.django_db
def test_export_refused_to_a_user_without_the_export_permission(tokyo, teammate, outsider, client):
    # given a user without crm.export_segment
    user = UserFactory(username="viewer-only")
    user.user_permissions.add(Permission.objects.get(codename="view_segment"))
    # then the service and the page refuse
    with pytest.raises(PermissionDenied):
        services.segment_export_personal(user=user, segment=tokyo, purpose_code="customer_management")
    client.force_login(user)
    assert client.get(reverse("admin:crm_segment_export", args=[tokyo.pk])).status_code == 403
    assert not SegmentExport.objects.exists()


def _seeing_clear(user):
    """`user` with 'view personal data unmasked', which an export to a recipient requires."""
    pii = Permission.objects.get(content_type__app_label="crm", codename="view_customer_pii")
    user.user_permissions.add(pii)
    return type(user).objects.get(pk=user.pk)  # a fresh permission cache


@pytest.mark.django_db
def test_unknown_purpose_and_recipient_without_provision_service_are_refused(
    tokyo, team, teammate, monkeypatch
):
    CustomerFactory(team=team, prefecture="13")
    with pytest.raises(ValidationError):
        services.segment_export_personal(user=teammate, segment=tokyo, purpose_code="no_such_purpose")
    # without a registered provision recorder (APPI 29), an export to a recipient is refused, nothing recorded
    monkeypatch.setattr(hooks, "_provision_recorder", [])
    with pytest.raises(PermissionDenied):
        services.segment_export_personal(
            user=_seeing_clear(teammate),
            segment=tokyo,
            purpose_code="customer_management",
            destination=SegmentExport.Destination.RECIPIENT,
            recipient_ref="R-1",
        )
    assert not SegmentExport.objects.exists()


@pytest.mark.django_db
def test_recipient_export_is_recorded_as_provision_before_rows_leave(tokyo, team, teammate, monkeypatch):
    # given a provision recorder standing in for consent's (tests/consent/provision/test_segment_export.py)
    calls: list[tuple[int, list[int], str]] = []
    monkeypatch.setattr(
        hooks,
        "_provision_recorder",
        [lambda *, export, customer_ids, actor, basis, **_: calls.append((export.pk, customer_ids, basis))],
    )
    customer = CustomerFactory(team=team, prefecture="13")
    # when a segment goes to a recipient, then the recorder is called with the export and its ids first
    export, _rows = services.segment_export_personal(
        user=_seeing_clear(teammate),
        segment=tokyo,
        purpose_code="customer_management",
        destination=SegmentExport.Destination.RECIPIENT,
        recipient_ref="R-1",
    )
    assert calls == [(export.pk, [customer.pk], "")]


@pytest.mark.django_db
def test_without_the_lawful_basis_rule_nothing_is_exported(tokyo, team, teammate, monkeypatch):
    # given no app registered the lawful-basis rule, then exports are refused (fail closed)
    monkeypatch.setattr(eligibility, "_use_rule", [])
    CustomerFactory(team=team, prefecture="13")
    with pytest.raises(PermissionDenied):
        services.segment_export_personal(user=teammate, segment=tokyo, purpose_code="customer_management")


def test_export_columns_come_from_the_classification_registry():
    # the purpose's fields, never free text, blind indexes or special-care data
    assert services.export_columns("marketing_email") == ["id", "email"]
    analytics = services.export_columns("analytics")
    assert {"prefecture", "gender", "age_band", "device_id"} <= set(analytics)
    assert "preferences" not in services.export_columns("personalisation")
    assert "notes" not in services.export_columns("customer_support")


@pytest.mark.django_db
def test_segment_admin_saves_filters_and_shows_the_live_count(client, team, teammate):
    CustomerFactory(team=team, prefecture="13")
    client.force_login(teammate)
    answer = client.post(
        reverse("admin:crm_segment_add"),
        {"name": "東京の購買者", "description": "", "prefectures": ["13"], "min_purchases": "0"},
    )
    assert answer.status_code == 302, answer.content
    segment = Segment.objects.get(name="東京の購買者")
    assert segment.filters == {"prefectures": ["13"], "min_purchases": 0}
    page = client.get(reverse("admin:crm_segment_change", args=[segment.pk]))
    assert "field-member_count" in page.content.decode()


@pytest.mark.django_db
def test_score_filters_read_the_latest_rfm_run_and_clv_fit(team, teammate):
    from crm.analytics.models import RfmRun

    # given three customers: a champion with a high CLV, a hibernating one with a low P(alive), and one an
    # older run called a champion (superseded by the latest run)
    champion, sleeper, former = (CustomerFactory(team=team) for _ in range(3))
    old = RfmRun.objects.create(as_of=dt.date(2026, 1, 1))
    rfm_score_for(former, run=old, segment="champions", frequency=9, r_score=5, f_score=5, m_score=5)
    run = RfmRun.objects.create(as_of=dt.date(2026, 2, 1))
    for customer, segment in ((champion, "champions"), (sleeper, "hibernating"), (former, "lost")):
        rfm_score_for(customer, run=run, segment=segment)
    clv_fit_with([(champion, 90000, 0.95), (sleeper, 1000, 0.2)])

    def members(**filters: object) -> set[int]:
        segment = Segment(name="x", filters=filters)
        return set(selectors.segment_members(user=teammate, segment=segment).values_list("pk", flat=True))

    # then each score filter selects from the latest run and fit only
    assert members(rfm_segments=["champions"]) == {champion.pk}
    assert members(min_clv=50000) == {champion.pk}
    assert members(max_p_alive_pct=50) == {sleeper.pk}
    assert members(min_p_alive_pct=50, rfm_segments=["champions", "hibernating"]) == {champion.pk}
    with pytest.raises(rules.SegmentFilterError):
        rules.SegmentFilters.parse({"max_p_alive_pct": 101})


@pytest.mark.django_db
def test_a_large_export_is_logged_in_parts(tokyo, team, teammate, monkeypatch):
    # given an export of three customers with parts of two ids
    monkeypatch.setattr(services, "AUDIT_IDS_PER_ENTRY", 2)
    made = sorted(CustomerFactory(team=team, prefecture="13").pk for _ in range(3))
    export, _rows = services.segment_export_personal(
        user=teammate, segment=tokyo, purpose_code="customer_management"
    )
    # then two access entries name the export and together every id, each with the total count
    entries = AuditEntry.objects.filter(object_pk__startswith=f"segment-export:{export.pk}:").order_by(
        "object_pk"
    )
    parts = [e.additional_data["export"] for e in entries]
    assert [p["customer_ids"] for p in parts] == [made[:2], made[2:]]
    assert {p["count"] for p in parts} == {3}


@pytest.mark.django_db
def test_publication_page_refused_without_change_permission(client, team, teammate):
    # given an anonymised export and a staff member (who may view export records but not record publication)
    segment = Segment.objects.create(name="東京", filters={"prefectures": ["13"]})
    export = SegmentExport.objects.create(
        segment=segment, kind=SegmentExport.Kind.ANONYMISED, purpose_code="analytics", created_by=teammate
    )
    client.force_login(teammate)
    answer = client.post(
        reverse("admin:crm_segmentexport_publish", args=[export.pk]), {"url": "https://example.jp/items"}
    )
    # then the page is refused and nothing is recorded
    assert answer.status_code == 403
    export.refresh_from_db()
    assert export.items_published_at is None
