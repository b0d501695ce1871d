"""Fixtures for the browser tests: the system's Chromium driven by Playwright against `live_server`.

The browser is the distribution's Chromium (never a download by `playwright install`), so the tests run on a
machine that only has Debian's `chromium` package. Without it the tests skip on a developer's machine but fail
in CI (env `CI` set), where a silently skipped browser test would hide a broken admin.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission

from crm import services
from crm.models import TeamMembership
from crm.permissions import ROLE_STAFF
from tests.factories import UserFactory
from tests.marks import transactional_all_apps

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's password

# `live_server` serves from another thread, so the test data must be committed: a transactional test.
# `available_apps` (all of them) makes Django flush with TRUNCATE … CASCADE and re-run post_migrate (content
# types, permissions, role groups) before each test. Without CASCADE the flush fails: django-auditlog's own
# migrations create the table of the swapped-out `auditlog.LogEntry` with a foreign key to auth_user, and
# flush does not know that table (django-auditlog issue #804; PR #805 fixes it, not in the pinned 3.4.1).
TRANSACTIONAL_DB = transactional_all_apps()


def log_in(page: Any, base_url: str, username: str) -> None:
    """Sign `username` in on the admin's login page (UserFactory's password) and wait for the index."""
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form [type=submit]")
    page.wait_for_url(f"{base_url}/admin/")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    # Keep each phase's report on the item so the page fixture knows whether the test failed.
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def require_chromium() -> str:
    """The path of the system's Chromium; skips without it, but fails in CI (env CI set)."""
    path = find_chromium()
    if path is None:
        message = (
            "Chromium not found on PATH (looked for: " + ", ".join(CHROMIUM_NAMES) + "). "
            "Install it with `apt-get install -y chromium`; the browser tests never download a browser."
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI: {message}", pytrace=False)
        pytest.skip(message)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # After the flush of a TRANSACTIONAL_DB test (post_migrate is inhibited when available_apps is set),
    # recreate content types, permissions and role groups, as an ordinary transactional test's flush does:
    # tests running after these ones must find the database as Django's test runner leaves it.
    yield
    marker = item.get_closest_marker("django_db")
    if nextitem is None or marker is None or marker.kwargs.get("available_apps") is None:
        return  # (with no next item the session's teardown has already dropped the test database)
    from django.core.management.sql import emit_post_migrate_signal
    from django.db import connection
    from pytest_django.plugin import blocking_manager_key

    if not connection.settings_dict["NAME"].startswith("test_"):
        return  # the test never got its database (a fixture failed first): nothing was flushed

    with item.config.stash[blocking_manager_key].unblock():
        emit_post_migrate_signal(verbosity=0, interactive=False, db="default")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    return require_chromium()


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop in this thread, which makes Django refuse ORM calls from the
    # test body ("SynchronousOnlyOperation"). The test thread does no async work, so this is safe here.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
    try:
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# Run in every page before its own scripts (Playwright injects it outside the page's CSP): each violation of
# the Content-Security-Policy is written to the console with this marker, where the fixture collects it.
CSP_MARK = "CSP-VIOLATION"
_REPORT_CSP = (
    "document.addEventListener('securitypolicyviolation', function (e) {"
    f"  console.error('{CSP_MARK} ' + e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile);"
    "});"
)


@pytest.fixture(autouse=True)
def _demo_second_factor_bypass(request: pytest.FixtureRequest, settings: Any) -> None:
    """The browser tests sign in with the password only, as the demo logins of `./dev up` do
    (OTP_DEV_BYPASS); those of the second factor itself are marked `real_second_factor`."""
    if not request.node.get_closest_marker("real_second_factor"):
        settings.OTP_DEV_BYPASS = True


@pytest.fixture
def new_page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A factory of pages, each in its own browser context (own cookies = own login), Japanese locale.

    Every Content-Security-Policy violation reported on any page the test opens fails the test (issue #13).
    On failure every page opened by the test is saved as a screenshot under the test's tmp_path.
    """
    contexts: list[Any] = []
    pages: list[Any] = []
    violations: list[str] = []

    def collect(message: Any) -> None:
        text = message.text
        if CSP_MARK in text or "Content Security Policy" in text:
            violations.append(text)

    def make(locale: str = "ja-JP") -> Any:
        context = browser.new_context(locale=locale)
        context.set_default_timeout(10_000)
        context.add_init_script(script=_REPORT_CSP)
        contexts.append(context)
        page = context.new_page()
        page.on("console", collect)
        pages.append(page)
        return page

    make.csp_violations = violations  # type: ignore[attr-defined]
    yield make
    call = getattr(request.node, "rep_call", None)
    if call is not None and call.failed:
        for i, page in enumerate(pages):
            shot = tmp_path / f"failure-{i}.png"
            try:
                page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of the failed page: {shot}")
            except Exception as exc:  # a crashed page must not hide the test's own failure
                print(f"could not save a screenshot: {exc}")
    for context in contexts:
        context.close()
    assert violations == [], f"Content-Security-Policy violations reported by the browser: {violations}"


@pytest.fixture
def pii_teammate(team: Any) -> Any:
    """Staff member of `team` who also holds the explicit 'view personal data' permission."""
    user = UserFactory(username="pii_teammate", roles=[ROLE_STAFF])
    services.team_member_add(team=team, user=user, role=TeamMembership.Role.MEMBER)
    pii = Permission.objects.get(content_type__app_label="crm", codename="view_customer_pii")
    user.user_permissions.add(pii)
    return user
