"""Joins the migration lines written side by side: integrations, retention, scale indexes, audit."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0004_integrations"),
        ("crm", "0005_retention"),
        ("crm", "0007_scale_indexes"),
        ("crm", "0009_audit_deferred_seal"),
    ]

    operations = []
