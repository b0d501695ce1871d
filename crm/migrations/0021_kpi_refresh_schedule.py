"""The KPI page's months recomputed nightly at 02:30 JST (crm.insights.tasks.kpi_cache_refresh_task): at a
million customers the indicators take seconds to compute (bench/README.md), so the page reads the cache."""

from django.db import migrations

TASK = "crm.insights.kpi_cache_refresh"
NAME = "KPIの再計算（毎日 2:30）"


def seed(apps, schema_editor):
    from django.utils import timezone

    Crontab = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    nightly, _ = Crontab.objects.get_or_create(
        minute="30", hour="2", day_of_week="*", day_of_month="*", month_of_year="*", timezone="Asia/Tokyo"
    )
    PeriodicTask.objects.get_or_create(
        name=NAME, defaults={"task": TASK, "crontab": nightly, "enabled": True}
    )
    # DatabaseScheduler only re-reads its schedule when this marker changes.
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def unseed(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [("crm", "0020_insights"), ("django_celery_beat", "0019_alter_periodictasks_options")]

    operations = [migrations.RunPython(seed, unseed)]
