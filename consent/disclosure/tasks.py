"""Celery tasks of the disclosure package (imported by consent.tasks). Thin: an id in, one service call."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.db import InterfaceError, OperationalError

from consent.disclosure import services

__all__ = ["disclosure_package_build", "disclosure_packages_resume"]


@shared_task(
    name=services.BUILD_TASK,
    bind=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
    # A package of tens of thousands of rows builds in seconds: far below the broker's visibility timeout.
    soft_time_limit=480,
    time_limit=540,
)
def disclosure_package_build(self: Any, package_id: int) -> str:
    """Build one disclosure package; a duplicate message, or one for a package already built, does nothing."""
    return services.disclosure_package_build(package_id=package_id)


@shared_task(name="consent.disclosure.resume")
def disclosure_packages_resume() -> int:
    """Re-send the builds a killed worker left behind (no build holds them)."""
    return services.disclosure_packages_resume()


@worker_ready.connect
def _resume_on_worker_start(sender: Any = None, **kwargs: Any) -> None:
    """A worker that (re)starts picks up the packages a killed worker was building."""
    disclosure_packages_resume.delay()
