from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class IncidentsConfig(AppConfig):
    name = "incidents"
    verbose_name = _("漏えい等事案")
    default_auto_field = "django.db.models.BigAutoField"
