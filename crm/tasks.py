"""Celery tasks of the crm app (thin: ids in, one service call)."""

from crm.integrations.tasks import *  # noqa: F403
from crm.retention.tasks import *  # noqa: F403
