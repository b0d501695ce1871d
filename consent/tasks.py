"""Celery tasks of the consent app (found by the Celery app's autodiscovery)."""

from consent.disclosure.tasks import *  # noqa: F403
from consent.requests.tasks import *  # noqa: F403
