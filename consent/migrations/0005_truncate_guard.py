"""TRUNCATE of the consent ledger and the purpose versions is refused (crm 0012 explains the guard)."""

import importlib

from django.db import migrations

_guard = importlib.import_module("crm.migrations.0012_truncate_guard")
LEDGER_TABLES = ("consent_consentevent", "consent_purposeversion")


class Migration(migrations.Migration):
    dependencies = [("consent", "0004_customer_active_index"), ("crm", "0012_truncate_guard")]

    operations = [migrations.RunSQL(_guard.guard_sql(LEDGER_TABLES), _guard.unguard_sql(LEDGER_TABLES))]
