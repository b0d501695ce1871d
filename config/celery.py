"""The Celery application: Redis broker, settings under CELERY_* in config.settings.

Tasks are short (one batch each) and acknowledged late, with one message prefetched per worker process, so
that a worker killed mid-task leaves its message to be redelivered, and every task is safe to run twice.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("crm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


from celery.signals import worker_process_init  # noqa: E402


@worker_process_init.connect
def _check_keys(**kwargs: object) -> None:
    """Every worker process refuses to run with keys that cannot open the data."""
    from crm.checks import verify_encryption_canary

    verify_encryption_canary()
