"""Celery tasks of the insights (imported by crm.tasks). Thin: one service call, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from crm.insights import services

__all__ = ["kpi_cache_refresh_task"]


@shared_task(name=services.KPI_REFRESH_TASK, soft_time_limit=600, time_limit=660, ignore_result=True)
def kpi_cache_refresh_task() -> int:
    """Recompute the KPI page's months and put them in the cache (nightly from beat, and when the page's
    「再計算する」 asks). Running it twice computes the same figures twice."""
    return services.kpi_cache_refresh()
