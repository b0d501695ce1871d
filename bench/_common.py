"""What the admin benches (admin_bench.py, request_queue_bench.py) share: this checkout's Django set up as
production runs it, and the p50/p95 of their timings. Imported as `_common` (a script's own folder is first on
sys.path)."""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent


def django_setup() -> None:
    """This checkout's Django, measuring what production runs: no DEBUG query log, no template debugging.
    "testserver" is the test Client's host."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
    django.setup()


def percentile_95(times_ms: list[float]) -> float:
    """The 95th percentile, nearest rank."""
    ordered = sorted(times_ms)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


class Timings:
    """The p50 and p95 of a result's `times_ms` (a base of the benches' result dataclasses)."""

    times_ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def p95(self) -> float:
        return percentile_95(self.times_ms)
