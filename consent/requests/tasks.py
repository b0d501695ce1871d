"""Celery tasks of the request desk (thin: one service call)."""

from celery import shared_task

from consent.requests import services


@shared_task(name="consent.requests.unconfirmed_purge", ignore_result=True)
def unconfirmed_purge() -> int:
    """Hourly (beat schedule of migration consent/0011): form requests whose link expired unconfirmed are
    deleted, at most 1,000 a run. Safe to run twice."""
    return services.requests_unconfirmed_purge()
