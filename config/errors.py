"""Refusals and missing pages of the admin, in its own layout and the user's language.

Wired in config/urls.py (handler403, handler404); the log filter is config.log_filters.
Pages outside the admin (the public /privacy/ pages, the API, which answers in its own error shape) keep
Django's default handlers.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext
from django.views import defaults


def _admin_page(request: HttpRequest) -> bool:
    """An admin page seen by a signed-in staff member: the admin's chrome applies."""
    try:
        prefix = reverse("admin:index")
    except NoReverseMatch:
        return False
    user = getattr(request, "user", None)
    return request.path.startswith(prefix) and bool(user and user.is_active and user.is_staff)


def _render(request: HttpRequest, template: str, title: str, status: int) -> HttpResponse:
    # Rendered here, not a TemplateResponse: a response made from an exception is not rendered later.
    context: dict[str, Any] = {**admin.site.each_context(request), "title": title}
    return render(request, template, context, status=status)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler403: the admin's refusal page, with the way back to the menu."""
    if not _admin_page(request):
        return defaults.permission_denied(request, exception)
    return _render(request, "admin/403.html", gettext("この操作を行う権限がありません"), 403)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: the admin's "not found" page (with DEBUG on, Django shows its technical page)."""
    if not _admin_page(request):
        return defaults.page_not_found(request, exception)
    return _render(request, "admin/404.html", gettext("ページが見つかりません"), 404)
