"""What consent lends crm, registered in ConsentConfig.ready() because crm never imports consent.

Imported only from there: the services and selectors it hands over need the apps loaded.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from consent import selectors, services
from consent.disclosure import selectors as disclosure_selectors
from consent.disclosure import services as disclosure_services
from consent.provision import rules as provision_rules
from consent.provision import selectors as provision_selectors
from consent.provision import services as provision_services
from consent.provision.models import ProvisionBasis
from consent.requests import selectors as request_selectors
from consent.requests import services as request_services
from crm.analytics.eligibility import use_rule_register
from crm.insights.hooks import (
    kpi_series_register,
    provision_recorder_register,
    purposes_register,
    recipients_register,
)
from crm.retention.models import RetentionPolicy
from crm.retention.participants import (
    consent_withdrawn_source_register,
    erasure_participant_register,
    record_scope_register,
)
from crm.sealed_files import sealed_files_register


def register_with_retention() -> None:
    """What crm asks of this app, registered because crm never imports consent: the erasure of ledger
    evidence, the customers behind the "consent withdrawn" trigger, the provision records and disclosure
    packages retention policies remove, and the use rule of the analytics."""
    erasure_participant_register("consent.ledger_evidence", services.consent_evidence_erase)
    erasure_participant_register("consent.request_desk", request_services.requests_erasure_step)
    # Disclosure packages past their period, marked expired (files deleted after commit) by the policy of
    # scope "dsar_packages"; provision and receipt records (規則21・24) deleted by a policy of theirs. One
    # registry and one run path for both: crm.retention.participants.record_scope_register.
    record_scope_register(
        RetentionPolicy.Scope.DSAR_PACKAGES,
        disclosure_selectors.packages_due,
        remove=disclosure_services.disclosure_packages_remove,
    )
    consent_withdrawn_source_register(
        lambda purpose_code, days, as_of: selectors.withdrawn_since(purpose_code, days, as_of=as_of)
    )
    record_scope_register(RetentionPolicy.Scope.PROVISION_RECORDS, provision_selectors.records_due)
    # The request desk's own records: answered requests with their records, after REQUEST_RECORDS_KEEP_YEARS.
    record_scope_register(
        RetentionPolicy.Scope.REQUEST_RECORDS,
        request_selectors.request_records_due,
        remove=request_services.request_records_remove,
    )
    # Who crm's analytics may model: the one lawful-basis rule (crm.analytics.eligibility).
    use_rule_register(selectors.usable_for)


def register_with_insights() -> None:
    """What crm's insights ask of this app besides the use rule: the purposes an export may name, the
    recipients an export may go to with the provision recorder writing the APPI 29 record first, and the KPI
    page's consent opt-in rate per purpose and the request desk's on-time rate."""
    # The rule itself is registered once, for analytics and exports alike (use_rule_register above).
    purposes_register(lambda: [(p.code, str(p)) for p in selectors.published_purposes()])
    provision_recorder_register(provision_services.segment_export_provision)
    # The contract standing as the record (規則19(3)) needs a contract chosen: the provision page offers it,
    # a segment export does not.
    recipients_register(
        provision_selectors.recipient_choices,
        bases=lambda: [
            (code, str(title))
            for code, title in ProvisionBasis.choices
            if code != provision_rules.BASIS_CONTRACT_AS_RECORD
        ],
    )
    kpi_series_register(
        key="request_on_time",
        title=_("開示等請求の期限内対応率（法第33条〜第35条・GDPR第12条3項）"),
        unit="percent",
        source=request_selectors.on_time_rate_by_month,
    )
    kpi_series_register(
        key="consent_opt_in",
        title=_("同意率（利用目的別）"),
        unit="percent",
        source=selectors.opt_in_rate_by_month,
    )


def register_with_key_rotation() -> None:
    """The disclosure packages' sealed files, for `manage.py rotate_keys` to re-seal under the newest key."""
    sealed_files_register("consent.DisclosurePackage", disclosure_selectors.sealed_packages)
