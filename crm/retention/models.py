"""Retention policies, legal holds, runs and tombstones (issue: retention engine)."""
