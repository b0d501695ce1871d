"""Celery tasks of the crm app (thin: ids in, one service call)."""

from crm.retention.tasks import *  # noqa: F403
