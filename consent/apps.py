from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = _("同意・利用目的")
    default_auto_field = "django.db.models.BigAutoField"
