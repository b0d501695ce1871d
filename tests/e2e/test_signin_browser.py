"""Sign-in and the Content-Security-Policy in a real headless Chromium (issue #13).

Every page these tests open is watched for CSP violations by the `new_page` fixture (tests/e2e/conftest.py):
one reported violation fails the test.
"""

from __future__ import annotations

import base64
import http.server
import re
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest
from django_otp.oath import totp

from tests.e2e.conftest import PASSWORD, TRANSACTIONAL_DB

pytestmark = [pytest.mark.e2e, TRANSACTIONAL_DB]


def code_from_secret(secret: str) -> str:
    """What an authenticator app shows for the key printed on the enrolment page."""
    key = base64.b32decode(secret.replace(" ", "") + "=" * (-len(secret.replace(" ", "")) % 8))
    return f"{totp(key):06d}"


@pytest.mark.real_second_factor
def test_privacy_officer_enrols_a_second_factor_and_uses_the_admin_without_csp_violations(
    live_server, new_page, customer, privacy_officer
):
    base = live_server.url
    page = new_page()
    # given the officer signing in with the password
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "privacy")
    page.fill("#id_password", PASSWORD)
    page.click("#login-form [type=submit]")
    # then the enrolment page comes first, with a QR code and the key
    page.wait_for_url(re.compile(r".*/admin/signin/otp/enrol/.*"))
    assert page.locator(".crm-otp-qr svg").count() == 1
    secret = page.inner_text("#otp-secret")
    # when the code from the app is entered
    page.fill("#id_token", code_from_secret(secret))
    page.click("#otp-form [type=submit]")
    # then ten recovery codes are shown once, and the admin opens after them
    assert page.locator("#recovery-codes li").count() == 10
    page.click("#otp-continue")
    page.wait_for_url(f"{base}/admin/")
    # and the admin's pages work: the customer list, a customer, the audit log
    page.goto(f"{base}/admin/crm/customer/")
    assert page.locator("#result_list tbody tr").count() == 1
    page.click("#result_list tbody tr a")
    page.wait_for_url(re.compile(r".*/admin/crm/customer/\d+/change/.*"))
    page.goto(f"{base}/admin/crm/auditentry/")
    assert page.locator("#result_list").count() == 1


def test_admin_login_lockout_page_and_staff_pages_raise_no_csp_violation(
    live_server, new_page, customer, teammate
):
    base = live_server.url
    page = new_page()
    # a wrong password, the right one, the admin's customer list and a change form with its scripts
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "teammate")
    page.fill("#id_password", "wrong-password")
    page.click("#login-form [type=submit]")
    assert page.locator(".errornote").count() == 1
    page.fill("#id_password", PASSWORD)
    page.click("#login-form [type=submit]")
    page.wait_for_url(f"{base}/admin/")
    page.goto(f"{base}/admin/crm/customer/add/")
    assert page.locator("#customer_form").count() == 1
    # and the lockout page, shown from another browser after too many failures
    other = new_page()
    for _ in range(5):
        other.goto(f"{base}/admin/login/")
        other.fill("#id_username", "nobody")
        other.fill("#id_password", "guess")
        other.click("#login-form [type=submit]")
    assert "ロック" in other.inner_text("h1")


def test_public_privacy_page_is_styled_without_inline_style(live_server, new_page):
    page = new_page()
    response = page.goto(f"{live_server.url}/privacy/")
    assert response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # the page's own stylesheet applies (52rem wide body), loaded from a file the CSP allows
    assert page.evaluate("getComputedStyle(document.body).maxWidth") == "832px"


@pytest.fixture
def shop_site() -> Iterator[Any]:
    """A company website on its own loopback origin (a tiny HTTP server in this process, stopped after the
    test): `shop_site.serve(html, policy)` sets the one page it answers with, under that CSP header."""
    page: dict[str, str] = {"html": "", "policy": ""}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page["html"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Security-Policy", page["policy"])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    site = types.SimpleNamespace(origin=f"http://127.0.0.1:{server.server_address[1]}", page=page)
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_cookie_banner_works_on_a_site_with_a_strict_csp(live_server, new_page, team, shop_site):
    from consent.models import Purpose
    from consent.services import purpose_create
    from crm.integrations import services as integration_services
    from crm.integrations.models import ApiScope

    # given a cookie purpose published, and a publishable key allowed from the shop's origin
    if not Purpose.objects.filter(code="cookies_analytics").exists():
        purpose_create(
            code="cookies_analytics",
            category="cookies",
            legal_basis="consent",
            title_ja="Cookie等によるアクセス解析",
            title_en="Cookies for web analytics",
            description_ja="Cookie等の識別子を用いて当社ウェブサイトの利用状況を解析するため。",
            description_en="To analyse how our website is used with cookies and similar identifiers.",
        )
    _client, key = integration_services.api_client_create(
        name="shop-banner", team=team, scopes=[ApiScope.COOKIES_WRITE], allowed_origins=[shop_site.origin]
    )
    crm = live_server.url
    # and the shop's page: no inline script or style allowed, scripts and API calls only to the CRM
    shop_site.page["policy"] = (
        f"default-src 'self'; script-src {crm}; connect-src {crm}; style-src 'self'; img-src 'self'; "
        "object-src 'none'; base-uri 'none'"
    )
    shop_site.page["html"] = (
        '<!DOCTYPE html><html lang="ja"><head><meta charset="utf-8"><title>Shop</title></head><body>'
        f'<h1>Shop</h1><script src="{crm}/static/consent/cookie-consent.js" data-endpoint="{crm}/api/v1" '
        f'data-key="{key}" defer></script></body></html>'
    )
    page = new_page()
    # when a visitor opens the shop
    page.goto(f"{shop_site.origin}/")
    # then the banner appears, laid out by its own styles (fixed at the bottom), with the category
    banner = page.locator("[role=dialog]")
    banner.wait_for()
    assert page.evaluate("getComputedStyle(document.querySelector('[role=dialog]')).position") == "fixed"
    assert "アクセス解析" in banner.inner_text()
    # and the choice is recorded
    page.click("text=すべて同意する")
    banner.wait_for(state="detached")
