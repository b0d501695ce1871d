"""POST /api/v1/incidents (issue #15): a monitoring system opens an incident with the `incidents:write` scope;
strict body, errors in the API's own shape, no personal data echoed, and no view of incidents gained."""

from __future__ import annotations

import pytest

from crm.integrations import services as integration_services
from crm.integrations.models import ApiScope
from incidents.models import Incident, IncidentTimelineEntry
from tests.api_support import SERVER_SCOPES, Api, messages_of

pytestmark = pytest.mark.django_db

BODY = {
    "title": "WAF: 不正ログインの成功 taro@example.com",
    "description": "対象アカウント taro@example.com 他",
    "kind": "unauthorised_access",
    "discovered_at": "2026-04-01T10:00:00+09:00",
    "systems": ["crm.Customer"],
    "data_classes": ["direct"],
    "unlawful_purpose": True,
    "affected_estimate": 1200,
}


@pytest.fixture
def monitoring(team, clean_rate_limits):
    client, token = integration_services.api_client_create(
        name="siem", team=team, scopes=[ApiScope.INCIDENTS_WRITE]
    )
    return client, Api(token)


def test_a_monitoring_system_opens_an_incident_and_gets_no_personal_data_back(monitoring):
    client, api = monitoring
    # when the monitoring system reports a breach
    response = api.post("/incidents", BODY)
    # then the incident is open (検知) with its facts, by the client's service user, its timeline begun
    assert response.status_code == 201, response.content
    incident = Incident.objects.get(pk=response.json()["id"])
    assert incident.status == Incident.Status.DETECTED and incident.created_by == client.user
    assert incident.aware_at == incident.discovered_at  # the earlier reading when not given
    assert (incident.unlawful_purpose, incident.affected_count, incident.systems) == (
        True,
        1200,
        ["crm.Customer"],
    )
    assert IncidentTimelineEntry.objects.filter(incident=incident, kind="created").exists()
    # and the answer has the number, the status and the reportability, never the texts sent
    body = response.json()
    assert set(body) == {"id", "reference", "status", "appi_reportable", "next_deadline_at"}
    assert body["reference"] == f"INC-{incident.pk}" and body["appi_reportable"] is True
    assert "taro" not in response.content.decode()
    # and the next deadline is the preliminary report's target (aware + 3 days)
    assert body["next_deadline_at"] == "2026-04-04T10:00:00+09:00"


def test_opening_an_incident_gives_the_client_no_view_of_incidents(monitoring):
    client, api = monitoring
    assert api.post("/incidents", BODY).status_code == 201
    assert not Incident.objects.restrict(client.user, "view").exists()


def test_a_token_without_the_scope_is_refused(team, clean_rate_limits):
    _client, token = integration_services.api_client_create(name="site", team=team, scopes=SERVER_SCOPES)
    response = Api(token).post("/incidents", BODY)
    assert response.status_code == 403
    assert "detail" in response.json()
    assert not Incident.objects.exists()


def test_no_token_is_401(clean_rate_limits):
    assert Api(None).post("/incidents", BODY).status_code == 401


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "alien_abduction"}, "kind"),
        ({"extra": 1}, "extra"),
        ({"affected_estimate": "1200"}, "affected_estimate"),  # a JSON string is not an integer
        ({"affected_estimate": -1}, "affected_estimate"),
        ({"unlawful_purpose": "yes"}, "unlawful_purpose"),
        ({"title": "x" * 201}, "title"),
        ({"title": ""}, "title"),
        ({"discovered_at": "2026-04-01T10:00:00"}, "discovered_at"),  # no offset
        ({"systems": ["s"] * 51}, "systems"),
        ({"data_classes": ["secret"]}, "0"),
    ],
)
def test_a_bad_body_is_422_in_the_apis_error_shape(monitoring, change, field):
    _client, api = monitoring
    response = api.post("/incidents", {**BODY, **change})
    assert response.status_code == 422, response.content
    assert field in messages_of(response)
    assert not Incident.objects.exists()


def test_a_system_outside_the_classification_registry_is_422_and_not_echoed(monitoring):
    _client, api = monitoring
    response = api.post("/incidents", {**BODY, "systems": ["taro@example.com"]})
    assert response.status_code == 422
    assert "taro" not in response.content.decode()
    assert not Incident.objects.exists()


def test_aware_before_discovered_is_422(monitoring):
    _client, api = monitoring
    response = api.post("/incidents", {**BODY, "aware_at": "2026-03-31T10:00:00+09:00"})
    assert response.status_code == 422
    assert not Incident.objects.exists()


def test_not_json_is_415_and_too_big_is_413(monitoring, settings):
    _client, api = monitoring
    response = api.http.post(
        "/api/v1/incidents", data="title=x", content_type="text/plain", headers=api._headers(None)
    )
    assert response.status_code == 415 and "detail" in response.json()
    big = {**BODY, "description": "x" * 5000, "systems": ["crm.Customer"] * 50}
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api.post("/incidents", big)
    assert response.status_code == 413 and "detail" in response.json()
    assert not Incident.objects.exists()


def test_a_retry_with_the_same_idempotency_key_opens_one_incident(monitoring):
    _client, api = monitoring
    first = api.post("/incidents", BODY, **{"Idempotency-Key": "alert-42"})
    again = api.post("/incidents", BODY, **{"Idempotency-Key": "alert-42"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and Incident.objects.count() == 1
