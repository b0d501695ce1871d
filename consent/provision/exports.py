"""Every path by which data leaves the system as a file or a download, and where it goes (issue #16).

A path that sends customers' personal data to a recipient (委託先, 第三者, 共同利用, group company) must
call `consent.provision.services.provision_record` (or `provision_export`, built on it) before anything
leaves. tests/consent/provision/test_exports.py finds the paths in the code (a download response, a CSV
writer, an `*_export(` call, a management command writing a file) and every API read, and fails for one
not listed here, or for a path listed as going to a recipient whose code does not call the service. A new
export is added here with its destination, and the reason when it is not a recipient.
"""

from __future__ import annotations

from dataclasses import dataclass

TO_RECIPIENT = "recipient"  # personal data to a recipient: provision record first (APPI 29)
INTERNAL = "internal"  # stays within the company (its own systems, backups)
NO_PERSONAL_DATA = "no_personal_data"  # names nobody (aggregates, metadata, keyed hashes)
# To the person the data is about (開示, APPI 33; GDPR 15 and 20): not a provision to a third party.
TO_DATA_SUBJECT = "data_subject"


@dataclass(frozen=True)
class ExportPath:
    destination: str
    reason: str


# "<file>:<function>" of the code that builds the download, or "api:<METHOD> <path>" of an API read.
EXPORT_PATHS: dict[str, ExportPath] = {
    "consent/provision/admin.py:provide_view": ExportPath(
        TO_RECIPIENT, "customers' fields for a recipient: services.provision_export writes the record first"
    ),
    "consent/provision/services.py:provision_export": ExportPath(
        TO_RECIPIENT, "the export to a recipient itself: provision_record before the first row is read"
    ),
    "consent/provision/admin.py:csv_response": ExportPath(
        NO_PERSONAL_DATA, "the CSV writer the views above use; each caller is listed with its destination"
    ),
    "consent/provision/admin.py:ropa_csv_view": ExportPath(
        NO_PERSONAL_DATA, "the record of processing: purposes, categories, recipients, policies"
    ),
    "consent/provision/admin.py:dictionary_csv_view": ExportPath(
        NO_PERSONAL_DATA, "the data dictionary: field names, classes, purposes"
    ),
    "consent/provision/admin.py:map_svg_view": ExportPath(NO_PERSONAL_DATA, "the data map: systems, flows"),
    "crm/retention/services/tombstones.py:tombstones_export": ExportPath(
        INTERNAL, "keyed hashes of erased customers, kept by the company beside its backups"
    ),
    "crm/retention/services/holds.py:legal_holds_export": ExportPath(
        INTERNAL, "legal holds named by keyed hashes, kept by the company beside its backups"
    ),
    "crm/management/commands/retention_export_tombstones.py:handle": ExportPath(
        INTERNAL, "writes the two files above for the operator (restore after a backup)"
    ),
    "crm/management/commands/rotate_keys.py:_reseal": ExportPath(
        INTERNAL,
        "re-seals a disclosure package's file under the newest key, in its own place (nothing leaves)",
    ),
    "consent/disclosure/admin.py:download_view": ExportPath(
        TO_DATA_SUBJECT,
        "a verified request's disclosure package, downloaded by its handler to answer the person (APPI 33)",
    ),
    "crm/disclosure/package.py:__init__": ExportPath(
        TO_DATA_SUBJECT, "the package writer's CSV per section, sealed inside the package above"
    ),
    "crm/disclosure/package.py:row": ExportPath(
        TO_DATA_SUBJECT, "one CSV row of the package writer (the package above)"
    ),
    "crm/insights/admin.py:_export": ExportPath(
        TO_RECIPIENT,
        "a segment's CSV, for the staff member who asked or for the recipient chosen on the form (only those "
        "the user may provide to); it goes through segment_export_personal, which writes the provision "
        "record first",
    ),
    "crm/insights/admin.py:_csv_response": ExportPath(
        INTERNAL, "the CSV writer of the export above; its caller is listed with its destination"
    ),
    "crm/insights/services.py:segment_export_personal": ExportPath(
        TO_RECIPIENT,
        "rows for the company's own download or, with a recipient as destination, for that recipient: "
        "hooks.record_provision has consent's recorder (services.segment_export_provision, which calls "
        "provision_record) write the record in the export's transaction before any row exists; refused "
        "without a recorder",
    ),
    "crm/insights/services.py:_record_export": ExportPath(
        INTERNAL, "records and audits the export above before its first row (ids and counts only)"
    ),
    "crm/insights/services.py:_audit_export": ExportPath(NO_PERSONAL_DATA, "the export's audit entry: ids"),
    "crm/insights/services.py:_may_export": ExportPath(NO_PERSONAL_DATA, "the permission check of an export"),
    "crm/insights/services.py:segment_export_anonymised": ExportPath(
        NO_PERSONAL_DATA,
        "匿名加工情報 (APPI 43): generalised and suppressed until k-anonymous, identifiers dropped, "
        "items published",
    ),
    # The integration API answers the company's own systems (API clients, each a system of the data map). A
    # client operated by a processor is a DataSystem with its `recipient`, and its flow is on the map
    # (entrustment, APPI 27(5)(i)); a provision to a third party never goes through these reads.
    "api:GET /customers/{external_id}/consents": ExportPath(
        INTERNAL, "a customer's consent state for the company's own integrated system"
    ),
    "api:GET /visitors/{visitor_id}/consents": ExportPath(
        INTERNAL, "a visitor's cookie choices, for the company's own website"
    ),
    "api:GET /cookie-consents/categories": ExportPath(NO_PERSONAL_DATA, "published cookie categories"),
    "api:GET /health": ExportPath(NO_PERSONAL_DATA, "liveness"),
}

# Names whose call sends the data to a recipient only after the provision record is written.
PROVISION_CALLS = frozenset(
    {
        "provision_record",
        "provision_export",
        # crm cannot name consent: crm.insights.hooks.record_provision calls the recorder consent registers,
        # services.segment_export_provision, which calls provision_record (refused when none is registered).
        "record_provision",
        # crm.insights.services.segment_export_personal, itself declared TO_RECIPIENT above and so checked to
        # call record_provision: its callers send a segment to a recipient only after the record.
        "segment_export_personal",
    }
)
