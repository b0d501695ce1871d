"""API clients in the admin: issued by the privacy officer, token shown once, revocable, never stored."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import authenticate
from django.test import RequestFactory

from crm.integrations import services as integration_services
from crm.integrations.models import ApiClient, ApiScope
from crm.models import AuditEntry

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/crm/apiclient/add/"
LIST_URL = "/admin/crm/apiclient/"


def _issue(client, team, **extra):
    data = {
        "name": "corporate-site",
        "description": "コーポレートサイト",
        "team": team.pk,
        "scopes": ["customers:write", "consents:write"],
        "allowed_origins": "",
        "rate_limit_per_minute": "",
        **extra,
    }
    return client.post(ADD_URL, data)


def test_privacy_officer_issues_a_client_and_sees_the_token_once(client, privacy_officer, team):
    # given the 個人情報保護管理者 in the admin
    client.force_login(privacy_officer)
    # when a client is issued
    response = _issue(client, team)
    # then the answer to that POST shows the token (not cached), and only its hash is stored
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = re.search(r'id="api-token"[^>]*>([^<]+)<', response.content.decode()).group(1)
    api_client = ApiClient.objects.get(name="corporate-site")
    assert api_client.token_hash == integration_services.token_hash(token)
    assert token not in str(ApiClient.objects.values().get(pk=api_client.pk))
    # and the change page never shows it again
    page = client.get(f"{LIST_URL}{api_client.pk}/change/").content.decode()
    assert token not in page
    # and issuing was audited with the officer as actor, without the hash
    entry = AuditEntry.objects.get(content_type__model="apiclient", object_pk=str(api_client.pk))
    assert entry.actor == privacy_officer
    assert "token_hash" not in (entry.changes or {})


def test_service_user_cannot_log_in(team):
    # given an issued client
    api_client, _token = integration_services.api_client_create(
        name="store-pos", team=team, scopes=[ApiScope.EVENTS_WRITE]
    )
    # then its service user has no password and no admin access
    user = api_client.user
    assert user.username == "api:store-pos"
    assert not user.has_usable_password()
    assert not user.is_staff
    # (django-axes' backend checks every sign-in's request, as the login page passes it)
    login = RequestFactory().post("/admin/login/")
    assert authenticate(login, username="api:store-pos", password="") is None


def test_publishable_scope_mixed_with_others_is_refused_on_the_form(client, privacy_officer, team):
    # given the officer
    client.force_login(privacy_officer)
    # when a public key is asked for together with customer writes
    response = _issue(client, team, name="mixed", scopes=["cookies:write", "customers:write"])
    # then the form says why and nothing is issued
    assert response.status_code == 200
    assert "公開キー専用" in response.content.decode()
    assert not ApiClient.objects.filter(name="mixed").exists()


def test_revoke_action_stops_the_token(client, privacy_officer, team):
    # given an issued client
    api_client, _token = integration_services.api_client_create(
        name="app", team=team, scopes=[ApiScope.CONSENTS_READ]
    )
    client.force_login(privacy_officer)
    # when the officer revokes it from the list
    client.post(LIST_URL, {"action": "revoke", "_selected_action": [api_client.pk]})
    # then it is revoked and its service user deactivated
    api_client.refresh_from_db()
    assert api_client.revoked_at is not None
    assert api_client.user.is_active is False


def test_rotate_action_shows_a_new_token_and_kills_the_old(client, privacy_officer, team):
    # given an issued client
    api_client, old = integration_services.api_client_create(
        name="app2", team=team, scopes=[ApiScope.CONSENTS_READ]
    )
    client.force_login(privacy_officer)
    # when the officer rotates the token
    response = client.post(LIST_URL, {"action": "rotate", "_selected_action": [api_client.pk]})
    # then the new token is shown once and only it matches the stored hash
    new = re.search(r'id="api-token"[^>]*>([^<]+)<', response.content.decode()).group(1)
    api_client.refresh_from_db()
    assert new != old
    assert api_client.token_hash == integration_services.token_hash(new)


def test_staff_and_auditors_cannot_issue_clients(client, owner, auditor, team):
    # given a team lead and an auditor (refused cases)
    for user in (owner, auditor):
        client.force_login(user)
        # when they try to issue a client
        response = _issue(client, team, name=f"x-{user.username}")
        # then refused
        assert response.status_code == 403
    assert not ApiClient.objects.exists()
