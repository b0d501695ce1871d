"""Celery tasks of the consent app (found by the Celery app's autodiscovery)."""

from consent.requests.tasks import *  # noqa: F403
