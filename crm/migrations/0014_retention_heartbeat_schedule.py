"""The stalled-slice watchdog runs every 30 seconds (was 5 minutes).

A worker killed between a batch's commit and the enqueue of the next batch left its slice idle until the
next watchdog tick: with the 5-minute schedule and a 300-second threshold, a 16-second run took 6 minutes.
Slices now count as stalled after RETENTION_HEARTBEAT_SECONDS (default 30) without a batch, and the
watchdog claims each one with a conditional UPDATE (crm.retention.services.retention_resume_stalled), so
running it often costs one indexed UPDATE that matches nothing.
"""

from django.db import migrations

TASK = "crm.retention.resume_stalled"
NAME_NOW = "保存期間ポリシー実行の再開（停止した区間の再投入、30秒ごと）"
NAME_BEFORE = "保存期間ポリシー実行の再開（停止した区間の再投入、5分ごと）"


def _reschedule(apps, every: int, period: str, name: str) -> None:
    from django.utils import timezone

    Interval = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    interval, _ = Interval.objects.get_or_create(every=every, period=period)
    for task in PeriodicTask.objects.filter(task=TASK):
        task.interval = interval
        if task.name in (NAME_NOW, NAME_BEFORE):  # an operator's own name for it stays
            task.name = name
        task.save(update_fields=["interval", "name"])
    # DatabaseScheduler only re-reads its schedule when this marker changes.
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def forward(apps, schema_editor):
    _reschedule(apps, 30, "seconds", NAME_NOW)


def backward(apps, schema_editor):
    _reschedule(apps, 5, "minutes", NAME_BEFORE)


class Migration(migrations.Migration):
    dependencies = [("crm", "0013_erase_permissions"), ("django_celery_beat", "0019_alter_periodictasks_options")]

    operations = [migrations.RunPython(forward, backward)]
