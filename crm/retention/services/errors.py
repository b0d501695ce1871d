"""Errors of the retention engine's writes. Messages are Japanese and hold no personal data."""

from __future__ import annotations


class RetentionError(RuntimeError):
    """A retention operation cannot start; the message is Japanese and holds no personal data."""


class ErasePermissionDenied(RetentionError):
    """The acting user may not erase (or anonymise) every customer of the call; nothing was done."""


class RetentionRunActive(RetentionError):
    """A run of this policy is already in progress (two runs of one policy never overlap)."""
