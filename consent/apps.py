from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = _("同意・利用目的")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from consent import field_classes  # noqa: F401  (registers classifications)
        from consent.demo import seed_consents
        from consent.models import (
            ConsentEvent,
            Objection,
            Purpose,
            PurposeVersion,
            SpecialCareRecord,
            VisitorLink,
        )
        from consent.roles import grant_consent_roles
        from crm.classification import audit_excluded_fields, audit_masked_fields
        from crm.demo import register_demo_seeder

        grant_consent_roles()
        _register_with_retention()
        _register_with_insights()
        register_demo_seeder(seed_consents)
        # ConsentState is derived from the ledger (raw upsert) and is not audited separately.
        for model in (Purpose, PurposeVersion, ConsentEvent, Objection, VisitorLink, SpecialCareRecord):
            label = model._meta.label
            auditlog.register(
                model,
                mask_fields=audit_masked_fields(label),
                exclude_fields=audit_excluded_fields(label),
            )


def _register_with_retention() -> None:
    """What crm asks of this app, registered because crm never imports consent: the erasure of ledger
    evidence, the customers behind the "consent withdrawn" trigger, and the use rule of the analytics."""
    from consent import selectors, services
    from crm.analytics.eligibility import use_rule_register
    from crm.retention.participants import consent_withdrawn_source_register, erasure_participant_register

    erasure_participant_register("consent.ledger_evidence", services.consent_evidence_erase)
    consent_withdrawn_source_register(
        lambda purpose_code, days, as_of: selectors.withdrawn_since(purpose_code, days, as_of=as_of)
    )
    # Who crm's analytics may model: the one lawful-basis rule (crm.analytics.eligibility).
    use_rule_register(selectors.usable_for)


def _register_with_insights() -> None:
    """What crm's insights ask of this app besides the use rule: the purposes an export may name, and the KPI
    page's consent opt-in rate per purpose."""
    from django.utils.translation import gettext_lazy as _

    from consent import selectors
    from crm.insights.hooks import kpi_series_register, purposes_register

    # The rule itself is registered once, for analytics and exports alike (use_rule_register above).
    purposes_register(lambda: [(p.code, str(p)) for p in selectors.published_purposes()])
    kpi_series_register(
        key="consent_opt_in",
        title=_("同意率（利用目的別）"),
        unit="percent",
        source=selectors.opt_in_rate_by_month,
    )
