"""Logging filters (settings.LOGGING). Imported while logging is configured, before the apps are loaded:
nothing here imports a model or an app."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied


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
