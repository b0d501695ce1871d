from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = _("同意・利用目的")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from consent import field_classes  # noqa: F401  (registers classifications)
        from consent.models import (
            ConsentEvent,
            Objection,
            Purpose,
            PurposeVersion,
            SpecialCareRecord,
            VisitorLink,
        )
        from consent.roles import grant_consent_roles
        from consent.selectors import withdrawn_since
        from crm.classification import audit_excluded_fields, audit_masked_fields
        from crm.retention.selectors import consent_withdrawn_source_register

        grant_consent_roles()
        # The retention engine's "consent withdrawn" trigger: crm owns the registry, never imports consent.
        consent_withdrawn_source_register(withdrawn_since)
        # ConsentState is derived from the ledger (raw upsert) and is not audited separately.
        for model in (Purpose, PurposeVersion, ConsentEvent, Objection, VisitorLink, SpecialCareRecord):
            label = model._meta.label
            auditlog.register(
                model,
                mask_fields=audit_masked_fields(label),
                exclude_fields=audit_excluded_fields(label),
            )
