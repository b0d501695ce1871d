"""The Celery application: Redis broker, settings under CELERY_* in config.settings.

Tasks are short (one batch each) and acknowledged late, with one message prefetched per worker process, so
that a worker killed mid-task leaves its message to be redelivered, and every task is safe to run twice.

A worker refuses to run with encryption keys that cannot open the data: the main process checks the canary
before it consumes anything (`worker_init`), and every pool process checks again when it starts
(`worker_process_init`). Celery's signal dispatch logs and swallows ordinary exceptions raised by a
receiver, so a failed check exits with SystemExit, which it does not swallow.
"""

from __future__ import annotations

import logging
import os

from celery import Celery
from celery.signals import worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("crm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger("crm.keys")

EX_CONFIG = 78  # sysexits.h: configuration error


def verify_keys_or_exit() -> None:
    """Verify the keys against the canary; on failure log it and exit the process (SystemExit)."""
    from django.db import connections

    from crm.checks import EncryptionKeyError, verify_encryption_canary

    try:
        verify_encryption_canary()
    except EncryptionKeyError as exc:
        logger.critical("Celery worker refuses to start: %s", exc)
        raise SystemExit(EX_CONFIG) from exc
    finally:
        # Pool processes are forked from the main process: they must not inherit its database socket.
        connections.close_all()


def _check_keys(**kwargs: object) -> None:
    """Every worker process refuses to run with keys that cannot open the data."""
    verify_keys_or_exit()


@worker_init.connect
def _check_keys_main(**kwargs: object) -> None:
    """The worker's main process checks first, before any pool process exists."""
    verify_keys_or_exit()
    # Connected only now, so it runs after Celery's Django fixup (connected during worker_init) has dropped
    # the database connections a forked pool process inherits.
    worker_process_init.connect(_check_keys, weak=False, dispatch_uid="crm.check_keys")
