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
        from django.db.models.signals import post_migrate, post_save

        from crm import (  # noqa: F401  (registers checks and classifications)
            checks,
            field_classes,
            tasks,
        )
        from crm.analytics.demo import seed_analytics
        from crm.audit.sealing import audit_seal_after_save
        from crm.classification import audit_excluded_fields, audit_masked_fields
        from crm.demo import register_demo_seeder
        from crm.disclosure import sections as disclosure_sections
        from crm.insights.demo import seed_insights
        from crm.models import AuditEntry, Customer, Team, TeamMembership
        from crm.roles import roles_sync
        from crm.signin import receivers as signin_receivers

        # Every app's post_migrate: the permissions of apps after crm exist only once theirs has run.
        register_demo_seeder(seed_analytics)
        register_demo_seeder(seed_insights)
        post_migrate.connect(roles_sync, dispatch_uid="crm.roles_sync")
        signin_receivers.connect()
        post_save.connect(audit_seal_after_save, sender=AuditEntry, dispatch_uid="crm.audit_seal_after_save")

        for model in (Customer, Team, TeamMembership):
            label = model._meta.label
            auditlog.register(
                model,
                mask_fields=audit_masked_fields(label),
                exclude_fields=audit_excluded_fields(label),
            )

        for module in self.part_admins:
            import_module(module)
        disclosure_sections.register()
