"""Celery tasks of the consent app (thin: ids in, one service call); Celery's autodiscovery imports this."""

from consent.disclosure.tasks import *  # noqa: F403
