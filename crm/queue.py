"""Queueing a Celery task by its registered name.

A service enqueues the task that continues its work (ARCHITECTURE: services enqueue with on_commit), and
that task calls the service: the tasks module imports the services, so the services name the task instead
of importing it back. Each app imports its tasks module in AppConfig.ready(), so every process (web, worker,
tests) has the task registered; through the registered task its own options apply, and so does
`task_always_eager` where a test sets it (Celery's send_task would ignore that).
"""

from __future__ import annotations

from typing import Any

from celery import current_app


def task_enqueue(name: str, *args: Any) -> None:
    """Queue the registered task `name` with `args` (KeyError: no app registered a task of that name)."""
    current_app.tasks[name].apply_async(args=args)
