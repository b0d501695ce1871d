from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = _("同意・利用目的")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from importlib import import_module

        from auditlog.registry import auditlog

        from consent import (
            field_classes,  # noqa: F401  (registers classifications)
            tasks,  # noqa: F401  (registers the Celery tasks the services queue by name)
        )
        from consent.demo import seed_consents, seed_requests
        from consent.disclosure import sections as disclosure_sections
        from consent.disclosure.demo import seed_packages
        from consent.models import (
            ConsentEvent,
            CrossBorderBasis,
            DataFlow,
            DataSubjectRequest,
            DataSystem,
            DisclosurePackage,
            IdentityVerification,
            Objection,
            ProcessorAudit,
            ProcessorContract,
            ProvisionRecord,
            Purpose,
            PurposeVersion,
            ReceiptRecord,
            Recipient,
            RequestCompletion,
            RequestMessage,
            SpecialCareRecord,
            VisitorLink,
        )
        from consent.provision import field_classes as provision_field_classes  # noqa: F401
        from consent.provision.demo import seed_provision
        from consent.registrations import (
            register_with_insights,
            register_with_key_rotation,
            register_with_retention,
        )
        from consent.roles import grant_consent_roles
        from crm.classification import audit_excluded_fields, audit_masked_fields
        from crm.demo import register_demo_seeder

        grant_consent_roles()
        register_with_retention()
        import_module("consent.disclosure.admin")  # after the admin's autodiscovery (consent.admin)
        register_with_insights()
        register_with_key_rotation()
        register_demo_seeder(seed_consents)
        register_demo_seeder(seed_provision)
        register_demo_seeder(seed_requests)
        register_demo_seeder(seed_packages)
        disclosure_sections.register()
        # ConsentState is derived from the ledger (raw upsert) and is not audited separately; the people of a
        # provision or receipt record are bulk-linked with their own audit entry (consent.provision.services).
        audited = (Purpose, PurposeVersion, ConsentEvent, Objection, VisitorLink, SpecialCareRecord)
        provision = (
            Recipient,
            ProcessorContract,
            ProcessorAudit,
            CrossBorderBasis,
            ProvisionRecord,
            ReceiptRecord,
        )
        data_map = (DataSystem, DataFlow)
        # The request desk: every transition of a request is a save of its state, recorded here.
        request_desk = (DataSubjectRequest, IdentityVerification, RequestMessage, RequestCompletion)
        for model in (*audited, *provision, *data_map, *request_desk, DisclosurePackage):
            label = model._meta.label
            auditlog.register(
                model,
                mask_fields=audit_masked_fields(label),
                exclude_fields=audit_excluded_fields(label),
            )
