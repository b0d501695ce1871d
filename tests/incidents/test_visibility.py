"""Who sees an incident (issue #15, step 2): security and the privacy officer all of them, a response team
member only theirs, other staff none — through the gate, in the admin's list, its count and its pages."""

from __future__ import annotations

import pytest
from django.urls import reverse

from incidents.models import Incident, IncidentFiling, IncidentTimelineEntry
from tests.incidents.conftest import make_incident

pytestmark = pytest.mark.django_db

LIST = reverse("admin:incidents_incident_changelist")


@pytest.fixture
def second(security_user):
    return make_incident(security_user, title="ランサムウェア", kind=Incident.Kind.RANSOMWARE)


def _listed(client, user) -> tuple[set[int], int]:
    client.force_login(user)
    response = client.get(LIST)
    assert response.status_code == 200
    cl = response.context["cl"]
    return {obj.pk for obj in cl.result_list}, cl.result_count


def test_security_and_the_privacy_officer_see_every_incident(
    client, incident, second, security_user, privacy_officer
):
    for user in (security_user, privacy_officer):
        # when they open the list
        listed, count = _listed(client, user)
        # then both incidents are listed and counted
        assert listed == {incident.pk, second.pk}
        assert count == 2
        assert Incident.objects.restrict(user, "view").count() == 2


def test_a_response_team_member_sees_only_their_incident(client, incident, second, responder):
    # given staff on `incident`'s response team only
    # when they open the list, the count and each page
    listed, count = _listed(client, responder)
    # then they see their incident and nothing of the other one
    assert listed == {incident.pk}
    assert count == 1
    assert client.get(reverse("admin:incidents_incident_change", args=[incident.pk])).status_code == 200
    other_page = client.get(reverse("admin:incidents_incident_change", args=[second.pk]))
    assert other_page.status_code == 302  # as for an id that does not exist
    assert IncidentTimelineEntry.objects.restrict(responder).filter(incident=second).count() == 0
    assert IncidentTimelineEntry.objects.restrict(responder).filter(incident=incident).count() == 2


def test_other_staff_see_no_incident(client, incident, second, owner, teammate, support_agent, auditor):
    # given staff of the customers' teams, the request desk and the auditor, none on a response team
    for user in (owner, teammate):
        # when they open the list
        listed, count = _listed(client, user)
        # then it is empty, the count is nought, and the gate opens nothing
        assert (listed, count) == (set(), 0)
    for user in (owner, teammate, support_agent, auditor):
        assert Incident.objects.restrict(user, "view").count() == 0
        assert IncidentFiling.objects.restrict(user, "view").count() == 0
        assert IncidentTimelineEntry.objects.restrict(user, "view").count() == 0
    for user in (support_agent, auditor):
        client.force_login(user)
        assert client.get(LIST).status_code == 403


def test_a_responder_taken_off_the_team_sees_the_incident_no_more(incident, responder, security_user):
    from incidents import services

    services.incident_team_remove(incident=incident, user=responder, actor=security_user)
    fresh = type(responder).objects.get(pk=responder.pk)
    assert Incident.objects.restrict(fresh, "view").count() == 0


def test_a_responder_cannot_add_people_to_another_incident(second, responder):
    from incidents import services

    with pytest.raises(services.IncidentError):
        services.incident_team_add(incident=second, user=responder, actor=responder)
    assert Incident.objects.restrict(responder, "view").filter(pk=second.pk).count() == 0
