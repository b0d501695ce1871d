"""The admin speaks Japanese by default and English when the user asks for it (cookie, header, switcher)."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.e2e import conftest as e2e

HEADER_JA = "顧客管理システム（個人情報保護法・GDPR対応）"
HEADER_EN = "Customer management (APPI and GDPR compliant)"


@pytest.mark.django_db
def test_admin_index_is_japanese_by_default(client, teammate):
    # given a logged-in staff member whose browser states no language preference
    client.force_login(teammate)
    # when they open the admin index
    html = client.get("/admin/").content.decode()
    # then the page, its header and its title are Japanese
    assert '<html lang="ja"' in html
    assert HEADER_JA in html
    assert "<title>管理メニュー | 顧客管理</title>" in html
    assert HEADER_EN not in html


@pytest.mark.django_db
def test_admin_index_is_english_with_accept_language_en(client, teammate, customer):
    # given a staff member whose browser prefers English
    client.force_login(teammate)
    # when they open the admin index and the customer list
    index = client.get("/admin/", headers={"accept-language": "en-GB,en;q=0.9"}).content.decode()
    changelist = client.get("/admin/crm/customer/", headers={"accept-language": "en"}).content.decode()
    # then the header and the field labels are in English
    assert '<html lang="en"' in index
    assert HEADER_EN in index
    assert "Administration menu" in index
    assert HEADER_JA not in index
    assert "E-mail address" in changelist
    assert "Exact-match search by e-mail address" in changelist


@pytest.mark.django_db
def test_language_cookie_wins_over_accept_language(client, teammate):
    # given a staff member who chose English with the switcher (cookie) on a Japanese browser
    client.force_login(teammate)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    # when they open the admin index
    html = client.get("/admin/", headers={"accept-language": "ja"}).content.decode()
    # then it is in English
    assert HEADER_EN in html


@pytest.mark.django_db
def test_switcher_posts_to_set_language_and_switches_to_english(client):
    # given the login page (the switcher must work before logging in)
    page = client.get("/admin/login/").content.decode()
    assert 'action="/i18n/setlang/"' in page
    assert 'name="language" value="en"' in page
    # when English is chosen
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/admin/login/"})
    # then the choice is remembered and the login page comes back in English
    assert response.status_code == 302
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    assert HEADER_EN in client.get("/admin/login/").content.decode()


@pytest.mark.django_db
def test_switcher_refuses_an_unknown_language_and_an_outside_redirect(client):
    # given the login page
    # when someone posts a language we do not offer and a redirect to another site
    response = client.post("/i18n/setlang/", {"language": "fr", "next": "https://evil.example.com/"})
    # then the redirect stays on this site, and the admin stays Japanese (LocaleMiddleware only accepts the
    # LANGUAGES of the settings, even if Django's set_language stored a cookie for a language it knows)
    assert not response.headers["Location"].startswith("https://evil.example.com")
    html = client.get("/admin/login/").content.decode()
    assert '<html lang="ja"' in html
    assert HEADER_JA in html


def test_missing_chromium_fails_in_ci(monkeypatch):
    # given a machine without Chromium, in CI
    monkeypatch.setattr(e2e.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "1")
    # when the browser tests ask for it
    # then they fail (a skipped browser test in CI would hide a broken admin) and say how to fix it
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        e2e.require_chromium()


def test_missing_chromium_skips_on_a_developer_machine(monkeypatch):
    # given a developer machine without Chromium (no CI variable)
    monkeypatch.setattr(e2e.shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    # when the browser tests ask for it
    # then they are skipped with the reason
    with pytest.raises(pytest.skip.Exception, match="Chromium not found"):
        e2e.require_chromium()


def test_chromium_found_on_path(monkeypatch):
    # given Chromium on the PATH under its Debian name
    monkeypatch.setattr(e2e.shutil, "which", lambda name: "/usr/bin/chromium" if name == "chromium" else None)
    # when the browser tests ask for it
    # then its path is used
    assert e2e.require_chromium() == "/usr/bin/chromium"
