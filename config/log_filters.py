"""Logging filters (settings.LOGGING). Imported while logging is configured, before the apps are loaded:
nothing here imports a model or an app at import time.

- `QuietPermissionDenied`: a 403 is logged as its one line, without the PermissionDenied traceback.
- `ApiRouteNotPath`: Django logs every 4xx/5xx answer to `django.request` as "<reason>: <path>". The
  integration API's paths hold external ids (/api/v1/customers/<external_id>, /api/v1/visitors/<id>/…),
  which identify a person in the client's systems; logs carry no personal data (config.settings LOGGING).
  For API requests the path is replaced by the name of the route that answered (`api_v1:customer_upsert`).
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied

from config.api_paths import is_api

UNMATCHED_ROUTE = "api:<no route>"


def route_name(request: object) -> str:
    """The URL name of the route that answered the request, or UNMATCHED_ROUTE (a 404 matching no route)."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED_ROUTE
    return match.view_name or match.route


class ApiRouteNotPath(logging.Filter):
    """On `django.request`: an API request's path in the message arguments becomes its route name."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        if request is None or not hasattr(request, "path_info") or not is_api(request):
            return True
        if isinstance(record.args, tuple):
            # Django escapes the path (unicode_escape) before logging it; compare with that form too.
            paths = {request.path, request.path.encode("unicode_escape").decode("ascii")}
            name = route_name(request)
            record.args = tuple(name if isinstance(arg, str) and arg in paths else arg for arg in record.args)
        return True


class QuietPermissionDenied(logging.Filter):
    """django.request logs every 403 with the PermissionDenied traceback (one refused click, thirty lines).
    A refusal is expected behaviour: keep its one line ("Forbidden (Permission denied): /path", with the
    status code) and drop the traceback. Every other record, errors (5xx) included, passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, PermissionDenied) and getattr(record, "status_code", None) == 403:
            record.exc_info = None
            record.exc_text = None
        return True
