"""The integration API runs without the session, authentication, CSRF, messages and static-file middleware
(config/middleware.py); every other path keeps them, and the API keeps the rest."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_api_answers_keep_the_security_headers_and_touch_no_session():
    # when the API is called by a browser that carries a session cookie
    http = Client()
    http.cookies["sessionid"] = "not-a-session"
    response = http.get("/api/v1/health", headers={"Accept-Language": "en"})
    # then security, clickjacking and language headers are there, and no session was read or set
    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Content-Language"] == "en"
    assert "Cookie" not in response.get("Vary", "")
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies
    assert not hasattr(response.wsgi_request, "session")
    assert not hasattr(response.wsgi_request, "user")


def test_a_staff_session_does_not_authenticate_an_api_call():
    # given a logged-in staff member's browser
    http = Client()
    http.force_login(UserFactory(username="staff-with-session", is_staff=True))
    # when it calls a token-protected endpoint without a token
    response = http.post("/api/v1/consents", {}, content_type="application/json")
    # then it is refused as any call without a token
    assert response.status_code == 401


def test_pages_outside_the_api_keep_sessions_and_csrf():
    # given a browser that checks CSRF as a real one does
    http = Client(enforce_csrf_checks=True)
    # when the admin login page is fetched, then it sets the CSRF cookie (and the session machinery runs)
    page = http.get("/admin/login/")
    assert page.status_code == 200 and "csrftoken" in page.cookies
    assert hasattr(page.wsgi_request, "session") and hasattr(page.wsgi_request, "user")
    # when a login is posted without the token, then it is refused
    refused = http.post("/admin/login/", {"username": "x", "password": "y"})
    assert refused.status_code == 403
