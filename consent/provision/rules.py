"""Pure legal computations of third-party provision (no ORM): retention of provision records (規則21),
cross-border bases (APPI 28, 規則16–18), processor contract and audit flags (GDPR 28(3), APPI 25).

Dates are calendar dates in Asia/Tokyo. "N years from a day" is the same month and day N years later (29
February → 28 February), the convention legal-rules.md asks to state: no roll-forward to a business day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

# PPC-designated countries with a regime equivalent to Japan's (規則15; PPC告示): the EU/EEA members and the
# United Kingdom. No consent under APPI 28(1) is needed for them.
DESIGNATED_COUNTRIES = frozenset(
    {
        # EU
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
        "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
        # EEA
        "IS", "LI", "NO",
        # UK
        "GB",
    }
)  # fmt: skip
HOME_COUNTRY = "JP"

# 規則21: how long a provision (or receipt, 規則24) record is kept.
YEARS_KEPT = 3  # from creation; from the last provision for a batch record (規則19(2))
YEARS_KEPT_CONTRACT = 1  # from the last provision where the contract stands as the record (規則19(3))

# Bases of a provision.
BASIS_CONSENT = "consent"
BASIS_OPT_OUT = "opt_out"
BASIS_CONTRACT_AS_RECORD = "contract_as_record"
BASIS_ENTRUSTMENT = "entrustment"
BASIS_JOINT_USE = "joint_use"
# Provision on these bases is not provision to a third party (APPI 27(5): 委託, 共同利用): a 第三者提供の停止
# (APPI 35(3)) does not stop it.
NOT_THIRD_PARTY_BASES = frozenset({BASIS_ENTRUSTMENT, BASIS_JOINT_USE})

# The basis a provision to a recipient of each kind (Recipient.Kind) rests on unless the user names another:
# a processor receives data entrusted to it (27(5)(i)), a joint user under the published joint use
# (27(5)(iii)); a third party, and a group company (a separate legal person, hence a third party unless a
# joint user), only with the person's consent (27(1)); opt-out (27(2)) must be chosen, with its PPC
# notification date.
DEFAULT_BASIS_BY_KIND = {"processor": BASIS_ENTRUSTMENT, "joint_use": BASIS_JOINT_USE}


def default_basis(recipient_kind: str) -> str:
    """The usual basis of a provision to a recipient of `recipient_kind` (see DEFAULT_BASIS_BY_KIND)."""
    return DEFAULT_BASIS_BY_KIND.get(recipient_kind, BASIS_CONSENT)


# Cross-border bases (APPI 28).
XB_CONSENT = "consent"
XB_DESIGNATED = "designated_country"
XB_EQUIVALENT = "equivalent_system"

# GDPR Art. 28(3) clauses and APPI 25's supervision, in the order the admin lists them.
CONTRACT_CLAUSES = (
    "clause_instructions",  # 28(3)(a)
    "clause_confidentiality",  # 28(3)(b)
    "clause_security",  # 28(3)(c), Art. 32
    "clause_sub_processors",  # 28(3)(d), 28(2), 28(4)
    "clause_assistance",  # 28(3)(e)(f), Arts. 32–36
    "clause_deletion_return",  # 28(3)(g)
    "clause_audits",  # 28(3)(h)
    "appi_supervision",  # APPI 25: 委託先の監督
)

# Flags of a recipient (recipient_flags).
FLAG_NO_CONTRACT = "no_contract"
FLAG_MISSING_CLAUSES = "missing_clauses"
FLAG_CONTRACT_EXPIRED = "contract_expired"
FLAG_NO_AUDIT = "no_audit"
FLAG_AUDIT_OVERDUE = "audit_overdue"
FLAG_NO_TRANSFER_BASIS = "no_transfer_basis"


def add_years(day: dt.date, years: int) -> dt.date:
    """The same month and day `years` later; 29 February becomes 28 February in a common year."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def record_keep_until(*, basis: str, created_on: dt.date, last_provided_on: dt.date, batch: bool) -> dt.date:
    """The last day a provision record must be kept (規則21; receipt records 規則24 alike).

    - the contract (or a like document) stands as the record (規則19(3)): 1 year from the last provision;
    - a batch record of repeated provision (規則19(2)): 3 years from the last provision;
    - otherwise: 3 years from the day the record was made.
    Example: made 2026-04-01 → kept through 2029-04-01; contract as record, last provision 2026-06-30 →
    through 2027-06-30.
    """
    if basis == BASIS_CONTRACT_AS_RECORD:
        return add_years(last_provided_on, YEARS_KEPT_CONTRACT)
    if batch:
        return add_years(last_provided_on, YEARS_KEPT)
    return add_years(created_on, YEARS_KEPT)


def is_foreign(country: str) -> bool:
    """A recipient in a foreign country (外国にある第三者, APPI 28): any country code but Japan's."""
    return country.upper() != HOME_COUNTRY


def cross_border_basis_holds(
    *,
    kind: str,
    country: str,
    on: dt.date,
    information_given: bool = False,
    next_check_on: dt.date | None = None,
    withdrawn_on: dt.date | None = None,
) -> bool:
    """Whether a cross-border basis of `kind` for a recipient in `country` stands on day `on` (APPI 28).

    - consent (28(1)): only after the required information was given (規則17: the country, its regime, the
      recipient's measures); each person's consent is checked by the provision itself;
    - designated country (規則15–16): the country must be one the PPC designated;
    - equivalent system (28(1), 規則16・18): stands while its periodic check is not overdue.
    A basis withdrawn on or before `on` stands no more.
    """
    if withdrawn_on is not None and withdrawn_on <= on:
        return False
    if kind == XB_CONSENT:
        return information_given
    if kind == XB_DESIGNATED:
        return country.upper() in DESIGNATED_COUNTRIES
    if kind == XB_EQUIVALENT:
        return next_check_on is not None and on <= next_check_on
    return False


def recipient_flags(
    *,
    is_processor: bool,
    foreign: bool,
    on: dt.date,
    clauses: Mapping[str, bool] | None,
    contract_expires_on: dt.date | None,
    audit_next_due: dt.date | None,
    has_audit: bool,
    transfer_basis_holds: bool,
) -> list[str]:
    """The gaps of one recipient on day `on`, as flag codes (empty: nothing to act on).

    A processor needs a contract with every clause of GDPR Art. 28(3) and APPI 25's supervision ticked
    (`clauses` is the latest contract's, None without one), not expired (a contract expiring on `on` still
    holds that day), and audits whose next due date has not passed. A foreign recipient needs a cross-border
    basis standing on `on` (APPI 28).
    """
    flags: list[str] = []
    if is_processor:
        if clauses is None:
            flags.append(FLAG_NO_CONTRACT)
        else:
            if not all(clauses.get(name, False) for name in CONTRACT_CLAUSES):
                flags.append(FLAG_MISSING_CLAUSES)
            if contract_expires_on is not None and contract_expires_on < on:
                flags.append(FLAG_CONTRACT_EXPIRED)
        if not has_audit:
            flags.append(FLAG_NO_AUDIT)
        elif audit_next_due is not None and audit_next_due < on:
            flags.append(FLAG_AUDIT_OVERDUE)
    if foreign and not transfer_basis_holds:
        flags.append(FLAG_NO_TRANSFER_BASIS)
    return flags


def missing_clauses(clauses: Mapping[str, bool]) -> list[str]:
    return [name for name in CONTRACT_CLAUSES if not clauses.get(name, False)]
