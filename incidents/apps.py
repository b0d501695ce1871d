from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class IncidentsConfig(AppConfig):
    name = "incidents"
    verbose_name = _("漏えい等事案")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from crm.classification import audit_excluded_fields, audit_masked_fields
        from crm.demo import register_demo_seeder
        from incidents import (
            disclosure,
            field_classes,  # noqa: F401  (registers classifications)
            tasks,  # noqa: F401  (registers the Celery tasks the services queue by name)
        )
        from incidents.demo import seed_incidents
        from incidents.models import (
            Incident,
            IncidentAffected,
            IncidentCorrectiveAction,
            IncidentFiling,
            IncidentNotice,
            IncidentScope,
            IncidentTimelineEntry,
        )
        from incidents.roles import grant_incident_roles

        grant_incident_roles()
        register_demo_seeder(seed_incidents)
        disclosure.register()
        for model in (
            Incident,
            IncidentTimelineEntry,
            IncidentFiling,
            IncidentScope,
            IncidentAffected,
            IncidentNotice,
            IncidentCorrectiveAction,
        ):
            label = model._meta.label
            auditlog.register(
                model,
                mask_fields=audit_masked_fields(label),
                exclude_fields=audit_excluded_fields(label),
            )
