"""Refusals and missing pages in the admin's layout and the user's language, logged without a traceback."""

from __future__ import annotations

import logging
import sys

import pytest
from django.urls import reverse

from config.log_filters import QuietPermissionDenied

pytestmark = pytest.mark.django_db


def _delete_url(customer) -> str:
    return reverse("admin:crm_customer_delete", args=[customer.pk])


@pytest.mark.parametrize(
    ("language", "words"),
    [("ja", ["権限がありません", "管理メニューに戻る"]), ("en", ["permission", "Back to the admin menu"])],
)
def test_a_refusal_is_an_admin_page_in_the_users_language(client, owner, customer, language, words):
    # given a team lead in the admin, reading it in `language`
    client.force_login(owner)
    client.cookies["django_language"] = language
    # when they open a page they may not (every delete view is refused)
    response = client.get(_delete_url(customer))
    html = response.content.decode()
    # then the refusal is the admin's page: its header, the language, and a way back to the menu
    assert response.status_code == 403
    assert f'<html lang="{language}"' in html
    assert 'id="site-name"' in html
    assert f'href="{reverse("admin:index")}"' in html
    for word in words:
        assert word in html
    assert "403 Forbidden" not in html


def test_a_missing_admin_page_is_an_admin_page_in_the_users_language(client, owner):
    # given a team lead reading the admin in English
    client.force_login(owner)
    client.cookies["django_language"] = "en"
    # when they open an admin address that does not exist
    response = client.get(reverse("admin:index") + "crm/no-such-page/")
    html = response.content.decode()
    # then the answer is the admin's own "not found" page, in English, with the way back
    assert response.status_code == 404
    assert '<html lang="en"' in html and 'id="site-name"' in html
    assert "Back to the admin menu" in html


def test_a_refusal_logs_one_line_without_a_traceback(client, owner, customer, caplog):
    # given a team lead in the admin
    client.force_login(owner)
    # when they are refused a page
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get(_delete_url(customer)).status_code == 403
    # then the refusal is logged once, as one line with its path, without the exception's traceback
    records = [r for r in caplog.records if r.name == "django.request"]
    assert len(records) == 1
    assert records[0].status_code == 403
    assert _delete_url(customer) in records[0].getMessage()
    assert records[0].exc_info is None
    assert "Traceback" not in caplog.text


def test_the_filter_keeps_the_traceback_of_a_real_error():
    # given a record of a server error with its exception, as django.request writes it
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "django.request", logging.ERROR, __file__, 1, "Internal Server Error", (), exc_info
    )
    record.status_code = 500
    # when the filter sees it
    kept = QuietPermissionDenied().filter(record)
    # then it passes with its traceback
    assert kept is True
    assert record.exc_info == exc_info


def test_the_admin_has_a_favicon(client, owner):
    # given any admin page, the login page included
    from django.contrib.staticfiles import finders

    login = client.get(reverse("admin:login")).content.decode()
    client.force_login(owner)
    index = client.get(reverse("admin:index")).content.decode()
    # then it names the icon, which exists, and /favicon.ico leads to it
    for html in (login, index):
        assert '<link rel="icon" href="/static/crm/favicon.svg"' in html
    assert finders.find("crm/favicon.svg")
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response.url == "/static/crm/favicon.svg"
