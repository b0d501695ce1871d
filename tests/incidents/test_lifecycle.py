"""The incident's lifecycle, its append-only timeline and its filings (issue #15, step 1)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from incidents import services
from incidents.models import Incident, IncidentFiling, IncidentTimelineEntry
from incidents.services import IncidentError
from tests.incidents.conftest import JST, make_incident

pytestmark = pytest.mark.django_db

S = Incident.Status


def test_the_lifecycle_runs_its_steps_in_order_each_one_a_timeline_entry(incident, security_user):
    # given a detected incident
    # when it is moved through every step
    for step in (S.CONTAINED, S.ASSESSED, S.NOTIFIED, S.RECOVERED, S.CLOSED):
        services.incident_transition(incident=incident, to=step, actor=security_user, note=f"→ {step}")
    # then it is closed, and the timeline names each step with who and when
    incident.refresh_from_db()
    assert incident.status == S.CLOSED
    entries = list(incident.timeline.order_by("pk").values_list("kind", "from_status", "to_status", "actor"))
    assert entries == [
        ("created", "", "detected", security_user.pk),
        ("transition", "detected", "contained", security_user.pk),
        ("transition", "contained", "assessed", security_user.pk),
        ("transition", "assessed", "notified", security_user.pk),
        ("transition", "notified", "recovered", security_user.pk),
        ("transition", "recovered", "closed", security_user.pk),
    ]


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ((), S.CLOSED),  # detected → closed: skips every step
        ((), S.ASSESSED),  # detected → assessed: skips containment
        ((S.CONTAINED,), S.DETECTED),  # backwards
        ((S.CONTAINED, S.ASSESSED, S.NOTIFIED, S.RECOVERED, S.CLOSED), S.DETECTED),  # a closed one reopened
        ((), "solved"),  # no such state
    ],
)
def test_an_illegal_transition_is_refused_and_changes_nothing(incident, security_user, path, illegal):
    # given an incident moved along `path`
    for step in path:
        services.incident_transition(incident=incident, to=step, actor=security_user)
    before = Incident.objects.get(pk=incident.pk).status
    entries = IncidentTimelineEntry.objects.filter(incident=incident).count()
    # when a move outside the lifecycle is asked
    with pytest.raises(IncidentError):
        services.incident_transition(incident=incident, to=illegal, actor=security_user)
    # then the status and the timeline are as they were
    assert Incident.objects.get(pk=incident.pk).status == before
    assert IncidentTimelineEntry.objects.filter(incident=incident).count() == entries


def test_status_is_not_a_fact_the_update_service_sets(incident, security_user):
    # when the facts service is asked to set the status
    with pytest.raises(IncidentError):
        services.incident_update(incident=incident, actor=security_user, status=S.CLOSED)
    # then it is refused
    assert Incident.objects.get(pk=incident.pk).status == S.DETECTED


def test_a_user_who_may_not_change_the_incident_cannot_move_it(incident, outsider):
    # given staff not on the incident's response team
    # when they try to contain it
    with pytest.raises(IncidentError):
        services.incident_transition(incident=incident, to=S.CONTAINED, actor=outsider)
    # then nothing changed
    assert Incident.objects.get(pk=incident.pk).status == S.DETECTED


@pytest.mark.parametrize("statement", ["UPDATE {t} SET note = 'rewritten'", "DELETE FROM {t}"])
def test_the_database_refuses_to_rewrite_or_delete_the_timeline(incident, statement):
    # given an incident with its "created" entry
    table = IncidentTimelineEntry._meta.db_table
    # when anyone, by raw SQL, tries to rewrite or delete the entry
    with pytest.raises(Exception, match="追記専用"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(statement.format(t=table))
    # then the database refused it and the entry is as written
    assert list(IncidentTimelineEntry.objects.filter(incident=incident).values_list("note", flat=True)) == [
        ""
    ]


def test_the_database_refuses_to_delete_a_filing(incident, security_user):
    # given a filed 速報
    filing = services.incident_file(
        incident=incident, kind=IncidentFiling.Kind.PPC_PRELIMINARY, actor=security_user
    )
    # when it is deleted through the ORM
    with pytest.raises(Exception, match="追記専用"), transaction.atomic():
        IncidentFiling.objects.filter(pk=filing.pk).delete()
    # then it is still there
    assert IncidentFiling.objects.filter(pk=filing.pk).exists()


def test_the_database_refuses_to_truncate_the_timeline(incident):
    # given a session that has not lifted the guard (the tests' sessions lift it to flush: put it back)
    table = IncidentTimelineEntry._meta.db_table
    with pytest.raises(Exception, match="TRUNCATE"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL crm.allow_truncate = off")
            cursor.execute(f"TRUNCATE {table} CASCADE")
    assert IncidentTimelineEntry.objects.filter(incident=incident).exists()


def test_each_filing_is_recorded_once_and_stops_its_clock(incident, security_user):
    # given a 速報 filed
    filed_at = dt.datetime(2026, 4, 2, 15, 0, tzinfo=JST)
    services.incident_file(
        incident=incident, kind=IncidentFiling.Kind.PPC_PRELIMINARY, actor=security_user, filed_at=filed_at
    )
    # when the same report is filed again
    with pytest.raises(IncidentError):
        services.incident_file(
            incident=incident, kind=IncidentFiling.Kind.PPC_PRELIMINARY, actor=security_user
        )
    # then one filing is on record, by whom and when, with its timeline entry
    filing = IncidentFiling.objects.get(incident=incident)
    assert (filing.kind, filing.filed_at, filing.filed_by_id) == ("ppc_prelim", filed_at, security_user.pk)
    assert incident.timeline.filter(kind=IncidentTimelineEntry.Kind.FILING).count() == 1


def test_a_final_report_needs_the_preliminary_first(incident, security_user):
    with pytest.raises(IncidentError, match="速報"):
        services.incident_file(incident=incident, kind=IncidentFiling.Kind.PPC_FINAL, actor=security_user)
    assert not IncidentFiling.objects.exists()


def test_gdpr_reasons_for_delay_are_required_once_72_hours_have_passed(security_user):
    # given a GDPR incident the company became aware of four days ago
    aware = timezone.now() - dt.timedelta(days=4)
    incident = make_incident(
        security_user, gdpr_applies=True, discovered_at=aware, aware_at=aware, gdpr_late_reason="調査中"
    )
    # when its facts are saved without the reasons, or it is filed late without them
    with pytest.raises(IncidentError, match="遅延の理由"):
        services.incident_update(incident=incident, actor=security_user, gdpr_late_reason="")
    # then both are refused; with the reasons the late filing is recorded
    services.incident_file(
        incident=incident, kind=IncidentFiling.Kind.GDPR_SA, actor=security_user, late_reason="暗号鍵の調査"
    )
    incident.refresh_from_db()
    assert incident.gdpr_late_reason == "暗号鍵の調査"


def test_a_gdpr_incident_within_72_hours_needs_no_reasons(security_user):
    aware = timezone.now() - dt.timedelta(hours=5)
    incident = make_incident(security_user, gdpr_applies=True, discovered_at=aware, aware_at=aware)
    services.incident_file(incident=incident, kind=IncidentFiling.Kind.GDPR_SA, actor=security_user)
    assert IncidentFiling.objects.filter(incident=incident, kind="gdpr_sa").exists()


def test_a_late_gdpr_filing_without_reasons_is_refused(security_user):
    aware = timezone.now() - dt.timedelta(days=3, hours=1)
    incident = make_incident(
        security_user, gdpr_applies=True, discovered_at=aware, aware_at=aware, gdpr_late_reason="x"
    )
    Incident.objects.filter(pk=incident.pk).update(gdpr_late_reason="")  # as a record from before the rule
    with pytest.raises(IncidentError, match="遅延の理由"):
        services.incident_file(incident=incident, kind=IncidentFiling.Kind.GDPR_SA, actor=security_user)
    assert not IncidentFiling.objects.exists()


def test_systems_and_data_classes_come_from_the_classification_registry(security_user):
    # when an incident names a system the registry does not know
    with pytest.raises(IncidentError, match="分類台帳"):
        make_incident(security_user, systems=["crm.Nonexistent"])
    # then it is refused; registry names are accepted
    incident = make_incident(security_user, systems=["crm.Customer"], data_classes=["direct", "special_care"])
    assert incident.systems == ["crm.Customer"]


def test_the_clocks_come_from_the_rules_module(security_user):
    incident = make_incident(security_user, unlawful_purpose=True)
    clocks = incident.clocks()
    assert clocks.appi_reportable and clocks.appi_final_days == 60
    assert clocks.appi_final_due == dt.datetime(2026, 5, 31, 23, 59, 59, tzinfo=JST)


def test_filing_uniqueness_is_a_database_constraint(incident, security_user):
    IncidentFiling.objects.create(
        incident=incident, kind="gdpr_sa", filed_at=timezone.now(), filed_by=security_user
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        IncidentFiling.objects.create(
            incident=incident, kind="gdpr_sa", filed_at=timezone.now(), filed_by=security_user
        )
