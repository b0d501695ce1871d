"""Celery tasks of the retention engine (imported by crm.tasks)."""
