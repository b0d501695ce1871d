from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = _("顧客管理")
    default_auto_field = "django.db.models.BigAutoField"

    # The admin pages of crm's parts. Registered here, at app loading, not imported by crm.admin (which
    # Django's autodiscover loads): crm.retention.admin uses crm.admin.mixins, and the two stay one-way.
    # The admin app's ready() (autodiscover) runs first, so django-axes' and django-otp's own registrations
    # exist when crm.signin.admin replaces them.
    part_admins = (
        "crm.beat_admin",
        "crm.integrations.admin",
        "crm.retention.admin",
        "crm.signin.admin",
        "crm.analytics.admin",
        "crm.insights.admin",
    )

    def ready(self) -> None:
        from importlib import import_module

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

        for module in self.part_admins:
            import_module(module)
