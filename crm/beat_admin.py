"""django-celery-beat's admin pages with every label translatable (the adapter module for the library).

The app marks most of its texts for translation but not a few labels: a field's verbose name given as a
plain string ('Task Name') and columns named after methods or properties ('scheduler', 'human_readable',
'crontab_translation'). They are given gettext labels here, so that the project catalogue (locale/ja)
translates them with the rest; the app ships no Japanese catalogue.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import CrontabSchedule, PeriodicTask

# The same text, now lazy: the migration state is unchanged ('Task Name' equals its lazy translation).
PeriodicTask._meta.get_field("task").verbose_name = _("Task Name")


class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin):
    @admin.display(description=_("Scheduler"))
    def scheduler(self, obj: PeriodicTask) -> Any:
        return obj.scheduler or "-"

    @admin.display(description=_("Crontab translation"))
    def crontab_translation(self, obj: PeriodicTask) -> Any:
        return obj.crontab.human_readable if obj.crontab_id else "-"


class CrontabScheduleAdmin(beat_admin.CrontabScheduleAdmin):
    @admin.display(description=_("Human readable"))
    def human_readable(self, obj: CrontabSchedule) -> str:
        return obj.human_readable


for _model, _model_admin in ((PeriodicTask, PeriodicTaskAdmin), (CrontabSchedule, CrontabScheduleAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _model_admin)
