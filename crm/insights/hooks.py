"""What the apps above crm lend the insights (crm never imports them, not even inside a function).

- The lawful-basis rule: "may this customer be used for this purpose now" is consent's
  (`consent.selectors.usable_for`), registered once in crm.analytics.eligibility (the analytics ask it too);
  consent also registers here the purposes an export may name. Without the rule nothing is exported (fail
  closed).
- KPI series: indicators whose data lives above crm (consent opt-in rate per purpose; the request desk's
  on-time rate once it exists) register a source; the KPI page draws every registered one.
- The provision record (APPI Art. 29): an export to a recipient is recorded by the third-party provision
  service (consent.provision.services.provision_record, through the recorder consent registers) before it
  leaves; the export form offers the recipients consent lists for the user. Without a registered recorder,
  exports to a recipient are refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext

from crm.analytics.eligibility import use_rule

if TYPE_CHECKING:
    from crm.models import CustomerQuerySet

PurposeCodes = Callable[[], list[tuple[str, str]]]
_purposes: list[PurposeCodes] = []


def purposes_register(source: PurposeCodes) -> None:
    """Called by the consent app's ready(): (code, title) of the purposes an export may name (idempotent)."""
    _purposes[:] = [source]


def purposes() -> list[tuple[str, str]]:
    return _purposes[0]() if _purposes else []


def usable_for(qs: CustomerQuerySet, purpose_code: str) -> CustomerQuerySet:
    """The registered use rule (crm.analytics.eligibility: registered once by consent, for the analytics and
    the exports alike) applied to `qs`; refused (PermissionDenied) when none is: nothing leaves unchecked."""
    rule = use_rule()
    if rule is None:
        raise PermissionDenied(gettext("利用目的の法的根拠を確認できないため、出力できません。"))
    return rule(qs, purpose_code)


# A KPI source answers for the given months (first days, JST) {series label: {month ISO: value or None}}.
KpiSource = Callable[[list[dt.date]], dict[str, dict[str, float | None]]]


@dataclasses.dataclass(frozen=True)
class KpiSeries:
    """A block of the KPI page fed by an app above crm: `key` names it (re-registering replaces it), `title`
    is shown (a lazy translation), `unit` is "percent" or "yen", `source` computes it."""

    key: str
    title: Any
    unit: str
    source: KpiSource


_kpi_series: dict[str, KpiSeries] = {}


def kpi_series_register(*, key: str, title: Any, unit: str, source: KpiSource) -> None:
    """Called from an AppConfig.ready(): add an indicator to the KPI page."""
    _kpi_series[key] = KpiSeries(key=key, title=title, unit=unit, source=source)


def kpi_series() -> list[KpiSeries]:
    return list(_kpi_series.values())


# The provision recorder: called with the export record, the customer ids and the provision's basis (or ""
# for the recipient's usual one) before the rows leave for a recipient; it writes the APPI Art. 29 record
# or raises (a ValidationError, shown on the form) to refuse.
ProvisionRecorder = Callable[..., Any]
_provision_recorder: list[ProvisionRecorder] = []


def provision_recorder_register(recorder: ProvisionRecorder) -> None:
    """Called by the consent app's ready() (consent.provision.services.segment_export_provision)."""
    _provision_recorder[:] = [recorder]


def provision_recorder() -> ProvisionRecorder:
    if not _provision_recorder:
        raise PermissionDenied(gettext("提供記録（法第29条）を作成できないため、第三者へは出力できません。"))
    return _provision_recorder[0]


def record_provision(
    *,
    export: Any,
    customer_ids: list[int],
    actor: Any,
    basis: str = "",
    opt_out_notified_on: dt.date | None = None,
) -> Any:
    """Write the provision record of an export to a recipient through the registered recorder; refused
    (PermissionDenied) when none is registered: nothing leaves for a recipient unrecorded."""
    return provision_recorder()(
        export=export,
        customer_ids=customer_ids,
        actor=actor,
        basis=basis,
        opt_out_notified_on=opt_out_notified_on,
    )


# The recipients an export may go to, as (id, name) choices for `user` (only those the user may see and
# provide to), and the provision bases the export form offers (code, title); both registered by consent.
RecipientChoices = Callable[[Any], list[tuple[str, str]]]
BasisChoices = Callable[[], list[tuple[str, str]]]
_recipients: list[tuple[RecipientChoices, BasisChoices]] = []


def recipients_register(source: RecipientChoices, *, bases: BasisChoices) -> None:
    """Called by the consent app's ready(): the recipients the export form offers a user (idempotent)."""
    _recipients[:] = [(source, bases)]


def recipients(user: Any) -> list[tuple[str, str]]:
    return _recipients[0][0](user) if _recipients else []


def provision_bases() -> list[tuple[str, str]]:
    return _recipients[0][1]() if _recipients else []
