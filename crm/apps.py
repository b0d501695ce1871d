from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = _("顧客管理")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auditlog.registry import auditlog
        from django.db.models.signals import post_migrate

        from crm import checks, field_classes  # noqa: F401  (registers checks and classifications)
        from crm.classification import audit_excluded_fields, audit_masked_fields
        from crm.models import Customer, Team, TeamMembership
        from crm.roles import roles_sync
        from crm.signin import receivers as signin_receivers

        # Every app's post_migrate: the permissions of apps after crm exist only once theirs has run.
        post_migrate.connect(roles_sync, dispatch_uid="crm.roles_sync")
        signin_receivers.connect()

        for model in (Customer, Team, TeamMembership):
            label = model._meta.label
            auditlog.register(
                model,
                mask_fields=audit_masked_fields(label),
                exclude_fields=audit_excluded_fields(label),
            )
