"""Drop django-auditlog's own `auditlog_logentry` table: our entries live in crm_auditentry
(AUDITLOG_LOGENTRY_MODEL = "crm.AuditEntry"). django-auditlog 3.4.1's migrations still create the swapped-out
table with foreign keys to auth_user and django_content_type, which makes every TRUNCATE-based flush fail
(django-auditlog issue #804, fixed upstream after 3.4.1)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0006_audit_guard"),
        ("auditlog", "0017_add_actor_email"),
    ]

    operations = [
        migrations.RunSQL("DROP TABLE IF EXISTS auditlog_logentry CASCADE", migrations.RunSQL.noop),
    ]
