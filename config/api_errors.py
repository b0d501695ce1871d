"""Every error of the integration API in its own JSON shape, also those Django or django-ninja answer.

The API's handlers (crm.integrations.errors) answer `{"detail": …}` for what reaches an operation. Some
errors never do: a path under /api/ that matches no route (Django's 404 page), a method the route does not
take (django-ninja's plain-text 405) and an uncaught exception (Django's 500 page, logged by Django as
usual). This middleware, first in MIDDLEWARE, gives those the API's shape too; pages outside the API keep
Django's.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

from config.api_paths import is_api


def _message(status: int) -> str:
    messages = {
        404: _("このURLのAPIはありません。"),
        405: _("このURLはこのメソッドを受け付けません。"),
    }
    if status >= 500:
        return _("サーバーで問題が起きました。時間をおいて再試行してください。")
    return messages.get(status, _("リクエストを処理できませんでした。"))


class ApiErrorsAsJson:
    """Give a non-JSON error answer to an /api/ request the body `{"detail": "<message>"}` (same status and
    headers: Allow, Retry-After, … stay)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code < 400
            or response.streaming
            or not is_api(request)
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        # Rewritten in place rather than replaced: Django still knows whether it logged this answer already.
        response.content = json.dumps({"detail": _message(response.status_code)}, ensure_ascii=False)
        response["Content-Type"] = "application/json; charset=utf-8"
        if response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
        return response
