"""Content-Security-Policy (django-csp, issue #13): on every page, and nothing of ours needs an exception.

The browser tests (tests/e2e) fail on any violation Chromium reports on the pages they open; these tests
check the header itself and keep inline script and style out of our templates.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

BASE_DIR = Path(__file__).resolve().parents[2]


def directives(header: str) -> dict[str, list[str]]:
    parts = [p.strip().split() for p in header.split(";") if p.strip()]
    return {p[0]: p[1:] for p in parts}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/admin/login/", "/privacy/", "/api/v1/docs", "/admin/signin/otp/"])
def test_every_page_carries_a_policy_without_inline_script(path):
    # when a page is fetched (the admin's login, the public privacy page, the API docs, a redirect)
    response = Client().get(path)
    # then the answer carries a policy that allows scripts and styles from this site only
    policy = directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in str(policy) and "'unsafe-eval'" not in str(policy)


def test_no_template_of_ours_has_inline_script_or_style():
    # given every template of the project
    templates = [p for p in BASE_DIR.glob("**/templates/**/*.html") if ".venv" not in p.parts]
    assert templates
    offending = []
    for path in templates:
        text = path.read_text(encoding="utf-8")
        # a <script> with a body (JSON data blocks excepted), a <style> block, a style or on* attribute
        for match in re.finditer(r"<script\b([^>]*)>(.*?)</script>", text, re.S):
            if match.group(2).strip() and "application/json" not in match.group(1):
                offending.append(f"{path}: inline script")
        if (
            re.search(r"<style\b", text)
            or re.search(r"\sstyle\s*=", text)
            or re.search(r"\son[a-z]+\s*=", text)
        ):
            offending.append(f"{path}: inline style or handler")
    # then none needs an exception in the policy
    assert offending == []
