"""Affected people (issue #15, step 4): scoping by a query and by an uploaded list, the counts, the legal
holds placed while the incident is open and released (only its own) when it closes."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from crm.models import Customer, LegalHold
from crm.retention.services import customer_erase
from incidents import rules, services
from incidents.models import Incident, IncidentAffected, IncidentScope, IncidentScopeKey
from incidents.services import IncidentError
from tests.factories import CustomerFactory, UserFactory
from tests.incidents.conftest import make_incident

pytestmark = pytest.mark.django_db

S = Incident.Status


def _run(scope: IncidentScope) -> IncidentScope:
    """Run a scope's batches to the end as the worker would (each call one batch), with a bound."""
    for _ in range(1_000):
        if not services.incident_scope_advance(scope_id=scope.pk):
            break
    scope.refresh_from_db()
    return scope


def _affected(incident: Incident) -> set[int]:
    return set(IncidentAffected.objects.filter(incident=incident).values_list("customer_id", flat=True))


def _holds(incident: Incident) -> set[int]:
    return set(
        LegalHold.objects.active()
        .filter(reason=LegalHold.Reason.INCIDENT, reference=incident.reference)
        .values_list("customer_id", flat=True)
    )


@pytest.fixture
def officer_incident(privacy_officer):
    return make_incident(privacy_officer)


def test_scoping_by_query_adds_the_matching_customers_and_holds_them(
    monkeypatch, privacy_officer, officer_incident, team, other_team
):
    # given web-form customers of `team` (some before the period), app customers of `team`, and
    # web-form customers of `other_team`; batches of 2 ids so the scope takes several
    monkeypatch.setattr(services, "SCOPE_BATCH", 2)
    wanted = [CustomerFactory(team=team) for _ in range(3)]
    CustomerFactory(team=team, collection_channel=Customer.Channel.APP)
    CustomerFactory(team=other_team)
    # when the privacy officer scopes `team`'s web-form customers registered in the last hour
    now = timezone.now()
    scope = services.incident_scope_by_query(
        incident=officer_incident,
        actor=privacy_officer,
        team_ids=[team.pk],
        channel=Customer.Channel.WEB_FORM,
        created_from=now - dt.timedelta(hours=1),
        created_to=now + dt.timedelta(hours=1),
        enqueue=False,
    )
    scope = _run(scope)
    # then exactly those customers are affected, counted, and under the incident's hold
    ids = {c.pk for c in wanted}
    assert scope.status == IncidentScope.Status.DONE and scope.progress == 100
    assert _affected(officer_incident) == ids
    assert (scope.matched, scope.added) == (3, 3)
    assert _holds(officer_incident) == ids
    officer_incident.refresh_from_db()
    assert officer_incident.affected_count == 3
    # and each batch of the set-based insert left its audit entry, with the ids and no personal value
    from crm.models import AuditEntry

    entries = AuditEntry.objects.filter(additional_data__has_key="incident_affected")
    audited = {i for e in entries for i in e.additional_data["incident_affected"]["customer_ids"]}
    assert audited == ids
    assert all(e.actor_id == privacy_officer.pk for e in entries)


def test_scoping_twice_adds_each_person_once(privacy_officer, officer_incident, team):
    customer = CustomerFactory(team=team)
    for _ in range(2):
        _run(
            services.incident_scope_by_query(
                incident=officer_incident, actor=privacy_officer, team_ids=[team.pk], enqueue=False
            )
        )
    assert _affected(officer_incident) == {customer.pk}
    assert LegalHold.objects.filter(reference=officer_incident.reference).count() == 1


def test_scoping_by_upload_matches_through_the_blind_indexes_and_counts(
    privacy_officer, officer_incident, customer, team
):
    # given the standing customer (Taro.Yamada@Example.com, 090-1234-5678, M000000001) and another one
    other = CustomerFactory(team=team, email="hanako@example.com")
    # when a list is uploaded: the e-mail in other case, the phone in E.164, the other one's member number,
    # an unknown e-mail, and a line that is none of the three
    data = "\n".join(
        [
            "taro.yamada@example.com",
            "+81 90 1234 5678",
            other.member_no,
            "nobody@example.com",
            "？？",
        ]
    ).encode()
    scope = _run(
        services.incident_scope_by_upload(
            incident=officer_incident, actor=privacy_officer, data=data, enqueue=False
        )
    )
    # then three lines matched (two of them the same person), one did not, one was malformed; the two
    # people are affected and held, and no uploaded value is kept
    assert (scope.matched, scope.unmatched, scope.ambiguous, scope.invalid) == (3, 1, 0, 1)
    assert _affected(officer_incident) == {customer.pk, other.pk}
    assert _holds(officer_incident) == {customer.pk, other.pk}
    assert not IncidentScopeKey.objects.exists()


def test_a_line_matching_several_customers_is_ambiguous_and_not_added(
    privacy_officer, officer_incident, team, other_team
):
    # given two customers of different teams sharing an e-mail
    CustomerFactory(team=team, email="shared@example.com")
    CustomerFactory(team=other_team, email="shared@example.com")
    scope = _run(
        services.incident_scope_by_upload(
            incident=officer_incident, actor=privacy_officer, data=b"shared@example.com\n", enqueue=False
        )
    )
    assert (scope.matched, scope.unmatched, scope.ambiguous) == (0, 0, 1)
    assert _affected(officer_incident) == set()


def test_scoping_reaches_only_the_customers_the_actor_may_see(
    owner, officer_incident, privacy_officer, team, other_team
):
    # given staff on the response team who see only `team`'s customers
    services.incident_team_add(incident=officer_incident, user=owner, actor=privacy_officer)
    mine = CustomerFactory(team=team)
    theirs = CustomerFactory(team=other_team)
    scope = _run(
        services.incident_scope_by_upload(
            incident=officer_incident,
            actor=owner,
            data=f"{mine.member_no}\n{theirs.member_no}\n".encode(),
            enqueue=False,
        )
    )
    # then another team's customer is "unmatched" for them (as if it did not exist), and not added
    assert (scope.matched, scope.unmatched) == (1, 1)
    assert _affected(officer_incident) == {mine.pk}


def test_a_bad_upload_is_refused_and_changes_nothing(privacy_officer, officer_incident):
    for data in (b"\xff\xfe\x00bad", b"", b"x" * (services.UPLOAD_MAX_BYTES + 1)):
        with pytest.raises(IncidentError):
            services.incident_scope_by_upload(incident=officer_incident, actor=privacy_officer, data=data)
    assert not IncidentScope.objects.exists()


def test_the_affected_count_feeds_the_over_1000_trigger(monkeypatch, privacy_officer, officer_incident, team):
    # given a threshold of 1 person (a stand-in for 1,000, so the test needs only two customers)
    monkeypatch.setattr(rules, "AFFECTED_THRESHOLD", 1)
    for _ in range(2):
        CustomerFactory(team=team)
    assert not officer_incident.clocks().appi_reportable
    # when the scope adds both
    _run(
        services.incident_scope_by_query(
            incident=officer_incident, actor=privacy_officer, team_ids=[team.pk], enqueue=False
        )
    )
    # then the count is 2 and the incident is reportable for 規則7(4), with its deadline in the list's key
    incident = Incident.objects.get(pk=officer_incident.pk)
    assert incident.affected_count == 2
    assert incident.clocks().appi_triggers == ("over_1000",)
    assert incident.next_deadline_at == incident.clocks().appi_prelim_target


def test_closing_releases_only_the_incidents_own_holds(privacy_officer, officer_incident, customer):
    # given the customer affected by this incident and by another one, and under a litigation hold
    other_incident = make_incident(privacy_officer, title="別件")
    for incident in (officer_incident, other_incident):
        _run(
            services.incident_scope_by_upload(
                incident=incident, actor=privacy_officer, data=b"M000000001\n", enqueue=False
            )
        )
    lawyer = UserFactory(username="lawyer")
    LegalHold.objects.create(customer=customer, reason=LegalHold.Reason.LITIGATION, placed_by=lawyer)
    # when this incident is closed
    for step in (S.CONTAINED, S.ASSESSED, S.NOTIFIED, S.RECOVERED, S.CLOSED):
        services.incident_transition(incident=officer_incident, to=step, actor=privacy_officer)
    # then its hold is released, the other incident's and the litigation hold are still in force
    assert _holds(officer_incident) == set()
    assert _holds(other_incident) == {customer.pk}
    assert LegalHold.objects.active().filter(reason=LegalHold.Reason.LITIGATION, customer=customer).exists()
    assert officer_incident.timeline.filter(kind="hold").count() == 1


def test_a_closed_incident_cannot_be_scoped_and_a_running_scope_stops(
    monkeypatch, privacy_officer, officer_incident, team
):
    monkeypatch.setattr(services, "SCOPE_BATCH", 1)
    CustomerFactory(team=team)
    CustomerFactory(team=team)
    scope = services.incident_scope_by_query(
        incident=officer_incident, actor=privacy_officer, team_ids=[team.pk], enqueue=False
    )
    for step in (S.CONTAINED, S.ASSESSED, S.NOTIFIED, S.RECOVERED, S.CLOSED):
        services.incident_transition(incident=officer_incident, to=step, actor=privacy_officer)
    scope = _run(scope)
    assert scope.status == IncidentScope.Status.CANCELLED
    assert _affected(officer_incident) == set()
    with pytest.raises(IncidentError):
        services.incident_scope_by_query(incident=officer_incident, actor=privacy_officer, team_ids=[team.pk])


def test_a_held_affected_customer_is_skipped_by_erasure(
    privacy_officer, officer_incident, customer, support_agent
):
    # given the customer affected by an open incident
    _run(
        services.incident_scope_by_upload(
            incident=officer_incident, actor=privacy_officer, data=b"M000000001\n", enqueue=False
        )
    )
    # when the request desk erases them
    outcome = customer_erase(customer_ids=[customer.pk], reason="本人からの消去請求", actor=support_agent)
    # then the customer is left untouched and reported as held
    assert outcome.held == [customer.pk]
    assert Customer.objects.filter(pk=customer.pk).exists()


def test_a_role_that_sees_no_customer_cannot_scope(security_user, incident, customer):
    # given the security role (audit logs, no customer data) on an incident
    # when it asks to scope by a list naming a customer
    with pytest.raises(IncidentError, match="顧客を閲覧する権限"):
        services.incident_scope_by_upload(incident=incident, actor=security_user, data=b"M000000001\n")
    # then it is refused rather than reporting nobody affected
    assert not IncidentScope.objects.exists()


def test_scoping_by_last_activity_and_a_class_of_data_held(privacy_officer, officer_incident, team):
    from tests.crm.retention.conftest import add_history, jst, set_activity

    # given a buyer active in March, a customer active in March who never bought, a buyer active in May
    buyer = set_activity(CustomerFactory(team=team), jst(2026, 3, 10))
    add_history(buyer, purchases=1, events=0)
    set_activity(CustomerFactory(team=team), jst(2026, 3, 11))
    late = set_activity(CustomerFactory(team=team), jst(2026, 5, 1))
    add_history(late, purchases=1, events=0)
    # when the privacy officer scopes those last active in March holding purchase data (準識別子: purchases)
    scope = _run(
        services.incident_scope_by_query(
            incident=officer_incident,
            actor=privacy_officer,
            active_from=jst(2026, 3, 1),
            active_to=jst(2026, 4, 1),
            data_classes=["quasi"],
            enqueue=False,
        )
    )
    # then only the March buyer is affected
    assert _affected(officer_incident) == {buyer.pk}
    assert scope.criteria["data_classes"] == ["quasi"] and scope.criteria["active_from"].startswith(
        "2026-03-01"
    )


def test_a_class_no_model_holds_per_customer_is_refused(privacy_officer, officer_incident):
    with pytest.raises(IncidentError):
        services.incident_scope_by_query(
            incident=officer_incident, actor=privacy_officer, data_classes=["not_personal"], enqueue=False
        )
    assert not IncidentScope.objects.exists()


def test_the_scope_page_offers_last_activity_and_the_classes_held(client, privacy_officer, officer_incident):
    from django.urls import reverse

    client.force_login(privacy_officer)
    html = client.get(reverse("admin:incidents_incident_scope", args=[officer_incident.pk])).content.decode()
    assert 'name="active_from"' in html and 'name="data_classes" value="special_care"' in html


def test_a_retention_run_skips_the_affected_until_the_incident_closes(
    privacy_officer, officer_incident, team
):
    from crm.retention import services as retention
    from crm.retention.models import RetentionPolicy, RetentionRun
    from tests.crm.retention.conftest import NOW, jst, set_activity

    # given two customers inactive for six years, one of them affected by the open incident
    affected = set_activity(CustomerFactory(team=team), jst(2020, 1, 1))
    other = set_activity(CustomerFactory(team=team), jst(2020, 1, 1))
    _run(
        services.incident_scope_by_upload(
            incident=officer_incident,
            actor=privacy_officer,
            data=f"{affected.member_no}\n".encode(),
            enqueue=False,
        )
    )
    policy = RetentionPolicy.objects.create(
        name="inactive-3y", trigger="inactive", days=1095, action="erase", legal_basis="test", batch_size=10
    )
    # when the retention policy runs, then the affected customer is skipped as held, the other erased
    retention.retention_run_to_completion(
        run=retention.retention_run_start(policy=policy, as_of=NOW, enqueue=False)
    )
    assert set(Customer.objects.filter(pk__in=[affected.pk, other.pk]).values_list("pk", flat=True)) == {
        affected.pk
    }
    assert RetentionRun.objects.get().skipped_hold == 1
    # when the incident closes (its hold released) and the policy runs after, then the customer is erased
    for step in (S.CONTAINED, S.ASSESSED, S.NOTIFIED, S.RECOVERED, S.CLOSED):
        services.incident_transition(incident=officer_incident, to=step, actor=privacy_officer)
    assert _holds(officer_incident) == set()
    run = retention.retention_run_start(policy=policy, as_of=timezone.now(), enqueue=False)
    retention.retention_run_to_completion(run=run)
    run.refresh_from_db()
    assert (run.erased, run.skipped_hold) == (1, 0)
    assert not Customer.objects.filter(pk=affected.pk).exists()
