"""Hourly deletion of public-form requests whose confirmation link expired unused
(consent.requests.tasks.unconfirmed_purge)."""

from django.db import migrations

TASK = "consent.requests.unconfirmed_purge"
NAME = "確認されなかった開示等請求の削除（確認リンクの期限切れ、1時間ごと）"


def forward(apps, schema_editor):
    from django.utils import timezone

    Interval = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    interval, _ = Interval.objects.get_or_create(every=1, period="hours")
    if not PeriodicTask.objects.filter(task=TASK).exists():
        PeriodicTask.objects.create(name=NAME, task=TASK, interval=interval)
    # DatabaseScheduler only re-reads its schedule when this marker changes.
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def backward(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0010_request_outlives_customer"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forward, backward)]
