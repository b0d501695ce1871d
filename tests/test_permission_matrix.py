"""The one permission gate, tested NetBox's way (netbox/utilities/testing/views.py and api.py).

Generated: every registered admin and every API operation runs the same test body as four users — no
permission, model permission only, a member of the object's own team, a member of another team. A new
admin or endpoint gets these tests by being registered; what is written by hand is only its data (how to
make one row owned by a team: ADMIN_ROWS; how to call an endpoint naming a customer: API_CALLS) or, for an
admin or endpoint that reaches no personal data, the reason why (NOT_PERSONAL_ADMINS, NO_CUSTOMER_ENDPOINTS).

Also here: every model holding or pointing to personal data has restrict() on its default manager, and no
module but the gate reads guardian's tables or keeps a copy of the rule.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.urls import reverse

from consent import services as consent_services
from consent.models import ConsentEvent, ConsentState, Objection, Purpose, SpecialCareRecord
from consent.provision import services as provision_services
from consent.provision.models import (
    CrossBorderBasis,
    DataFlow,
    DataSystem,
    ProcessorAudit,
    ProcessorContract,
    Recipient,
)
from crm import services
from crm.classification import REGISTRY
from crm.integrations import services as integration_services
from crm.models import Customer, LegalHold, Team, TeamMembership, Tombstone
from crm.permissions import RestrictedQuerySet
from tests.api_support import SERVER_SCOPES, Api
from tests.factories import CustomerFactory, UserFactory, clv_score_for, rfm_score_for

ROOT = Path(__file__).resolve().parent.parent

# --- the four users ------------------------------------------------------------------------------------

CASES = ("no_permission", "model_permission_only", "own_team", "other_team")


def _user(case: str, perms: list[str], team: Team, other_team: Team, label: str = "", row: Any = None) -> Any:
    """A staff user for one case: `perms` are the model permissions the view needs (none for the first).

    For a row owned by something other than a customers' team (an incident: its response team), "own team"
    joins the row's owner and "other team" the owner of another such row (MEMBERS)."""
    user = UserFactory(username=f"gate-{case}")
    if case != "no_permission":
        app_perms = [p.split(".", 1) for p in perms]
        user.user_permissions.add(
            *[Permission.objects.get(content_type__app_label=a, codename=c) for a, c in app_perms]
        )
    if label in MEMBERS and case in ("own_team", "other_team"):
        owned_row = row if case == "own_team" else GATE_ROWS[label][0](other_team)
        MEMBERS[label](owned_row, user)
    elif case in ("own_team", "other_team"):
        services.team_member_add(
            team=team if case == "own_team" else other_team, user=user, role=TeamMembership.Role.MEMBER
        )
    return type(user).objects.get(pk=user.pk)  # a fresh object, as each request has


# --- the admin -----------------------------------------------------------------------------------------


def _customer_of(team: Team) -> Customer:
    return CustomerFactory(team=team)


def _consent_event_of(team: Team) -> ConsentEvent:
    return consent_services.consent_record(
        purpose_code="marketing_email",
        action=ConsentEvent.Action.GRANT,
        method=ConsentEvent.Method.OPT_IN,
        channel=ConsentEvent.Channel.WEB_FORM,
        customer=_customer_of(team),
    )


def _consent_state_of(team: Team) -> ConsentState:
    return ConsentState.objects.get(customer_id=_consent_event_of(team).customer_id)


def _special_care_record_of(team: Team) -> SpecialCareRecord:
    customer = _customer_of(team)
    consent_services.consent_record(
        purpose_code="special_care_health",
        action=ConsentEvent.Action.GRANT,
        method=ConsentEvent.Method.OPT_IN,
        channel=ConsentEvent.Channel.WEB_FORM,
        customer=customer,
    )
    return consent_services.special_care_record_create(
        customer=customer,
        purpose_code="special_care_health",
        kind="medical_history",
        content="小麦アレルギー",
    )


def _objection_of(team: Team) -> Objection:
    return consent_services.objection_record(
        customer=_customer_of(team), scope=Objection.Scope.DIRECT_MARKETING, source=Objection.Source.ADMIN
    )


def _recipient(team: Team | None = None) -> Any:
    return Recipient.objects.create(name=f"提供先-{uuid.uuid4().hex[:8]}", kind=Recipient.Kind.THIRD_PARTY)


def _provision_record_of(team: Team) -> Any:
    actor = UserFactory(username=f"provision-{uuid.uuid4().hex[:8]}", is_superuser=True)
    return provision_services.provision_record(
        actor=actor,
        recipient=_recipient(),
        customer_ids=[_customer_of(team).pk],
        data_items=["crm.Customer.email"],
        basis="opt_out",
        opt_out_notified_on=dt.date(2026, 1, 5),
    )


def _receipt_record_of(team: Team) -> Any:
    actor = UserFactory(username=f"receipt-{uuid.uuid4().hex[:8]}", is_superuser=True)
    return provision_services.receipt_record(
        actor=actor,
        provider_name="提供元株式会社",
        provider_address="東京都港区1-1",
        acquisition="自社の会員登録で取得（同意あり）",
        customer_ids=[_customer_of(team).pk],
        data_items=["crm.Customer.email"],
        basis="consent",
        received_on=dt.date(2026, 4, 1),
    )


def _contract(team: Team) -> Any:
    return ProcessorContract.objects.create(
        recipient=_recipient(), signed_on="2026-01-01", document_ref="CT-1"
    )


def _audit(team: Team) -> Any:
    return ProcessorAudit.objects.create(
        recipient=_recipient(), audited_on="2026-01-01", result="satisfactory", next_due_on="2027-01-01"
    )


def _basis(team: Team) -> Any:
    return CrossBorderBasis.objects.create(
        recipient=_recipient(), kind="designated_country", effective_on="2026-01-01"
    )


def _system(team: Team) -> Any:
    return DataSystem.objects.create(
        name=f"system-{uuid.uuid4().hex[:8]}", location="東京", data_owner="部長"
    )


def _flow(team: Team) -> Any:
    return DataFlow.objects.create(
        source=_system(team),
        target_recipient=_recipient(),
        purpose=Purpose.objects.first(),
        frequency="daily",
    )


def _legal_hold_of(team: Team) -> LegalHold:
    placed_by = UserFactory(username=f"hold-{uuid.uuid4().hex[:8]}")
    return LegalHold.objects.create(
        customer=_customer_of(team), reason=LegalHold.Reason.LITIGATION, placed_by=placed_by
    )


def _tombstone(team: Team) -> Tombstone:
    return Tombstone.objects.create(
        subject_hash=uuid.uuid4().hex * 2, scope="customers", action="erase", reason="test"
    )


def _incident_of(team: Team) -> Any:
    """An incident (customers' teams play no part: it belongs to its response team, see MEMBERS)."""
    from incidents.models import Incident
    from incidents.services import incident_create

    actor = UserFactory(username=f"incident-{uuid.uuid4().hex[:8]}", is_superuser=True)
    return incident_create(
        actor=actor,
        title="誤送信",
        kind=Incident.Kind.MISDELIVERY,
        discovered_at="2026-04-01T09:00:00+09:00",
        aware_at="2026-04-01T10:00:00+09:00",
    )


def _incident_timeline_entry_of(team: Team) -> Any:
    return _incident_of(team).timeline.get()


def _incident_filing_of(team: Team) -> Any:
    from incidents.services import incident_file

    incident = _incident_of(team)
    return incident_file(incident=incident, kind="ppc_prelim", actor=incident.created_by)


def _incident_scope_of(team: Team) -> Any:
    from incidents.services import incident_scope_by_upload

    incident = _incident_of(team)
    return incident_scope_by_upload(
        incident=incident, actor=incident.created_by, data=b"x@example.com\n", enqueue=False
    )


def _incident_scope_key_of(team: Team) -> Any:
    return _incident_scope_of(team).keys.get()


def _incident_affected_of(team: Team) -> Any:
    from incidents.models import IncidentAffected
    from incidents.services import incident_scope_advance

    customer = _customer_of(team)
    scope = _incident_scope_of(team)
    scope.keys.update(kind="member_no", value=customer.member_no)
    incident_scope_advance(scope_id=scope.pk)
    return IncidentAffected.objects.get(incident=scope.incident)


def _incident_notice_of(team: Team) -> Any:
    from incidents.services import incident_notices_queue

    affected = _incident_affected_of(team)
    incident_notices_queue(incident=affected.incident, actor=affected.incident.created_by, enqueue=False)
    return affected.incident.notices.get()


def _incident_corrective_action_of(team: Team) -> Any:
    from incidents.services import incident_action_add

    incident = _incident_of(team)
    actor = incident.created_by
    return incident_action_add(
        incident=incident, actor=actor, description="研修", owner=actor, due_on="2026-06-30"
    )


def _incident_team_join(row: Any, user: Any) -> None:
    from incidents.models import Incident, IncidentScopeKey
    from incidents.services import incident_team_add

    if isinstance(row, IncidentScopeKey):
        row = row.scope
    incident = row if isinstance(row, Incident) else row.incident
    incident_team_add(incident=incident, user=user, actor=incident.created_by)


def _request_of(team: Team) -> Any:
    """A request of the desk (customers' teams play no part: it belongs to its handler, see MEMBERS)."""
    from consent.requests.models import DataSubjectRequest

    return DataSubjectRequest.objects.create(
        kind="disclosure", channel="phone", received_at="2026-04-01T10:00:00+09:00", due_on="2026-04-15"
    )


def _request_part_of(part: str) -> Callable[[Team], Any]:
    def make(team: Team) -> Any:
        from consent.requests.models import IdentityVerification, RequestCompletion, RequestMessage

        request = _request_of(team)
        when = "2026-04-02T10:00:00+09:00"
        if part == "verification":
            return IdentityVerification.objects.create(
                request=request, method="id_document", verified_at=when
            )
        if part == "message":
            return RequestMessage.objects.create(
                request=request,
                kind="result",
                language="ja",
                subject="x",
                recipient_hash="0" * 64,
                sent_at=when,
            )
        return RequestCompletion.objects.create(request=request, subject_hash="0" * 64, outcome="completed")

    return make


def _disclosure_package_of(team: Team) -> Any:
    """A package of a verified request about a customer of `team` (it belongs to the request's handler)."""
    from consent.disclosure.models import DisclosurePackage
    from consent.requests.models import DataSubjectRequest

    request = _request_of(team)
    DataSubjectRequest.objects.filter(pk=request.pk).update(
        customer=_customer_of(team), identity_verified_at="2026-04-02T10:00:00+09:00", state="in_progress"
    )
    return DisclosurePackage.objects.create(request=request, language="ja")


def _request_handler_join(row: Any, user: Any) -> None:
    from consent.requests.models import DataSubjectRequest

    request_id = row.pk if isinstance(row, DataSubjectRequest) else row.request_id
    DataSubjectRequest.objects.filter(pk=request_id).update(handler=user)


def _purchase_import_of(team: Team) -> Any:
    from crm.models import PurchaseImport

    return PurchaseImport.objects.create(team=team, file_name="purchases.csv")


def _rfm_score_of(team: Team) -> Any:
    from crm.models import RfmRun

    return rfm_score_for(_customer_of(team), run=RfmRun.objects.create(as_of="2026-04-01", customers=1))


def _clv_score_of(team: Team) -> Any:
    from crm.models import ClvFit

    fit = ClvFit.objects.create(
        calibration_end="2026-04-01", r=0.24, alpha=4.4, a=0.79, b=2.4, log_likelihood=-10.0, customers=1
    )
    return clv_score_for(_customer_of(team), fit=fit)


# Rows whose owner is not a customers' team: how a user joins the owner of a row ("own team"/"other team").
MEMBERS: dict[str, Callable[[Any, Any], None]] = {
    "incidents.Incident": _incident_team_join,
    "incidents.IncidentTimelineEntry": _incident_team_join,
    "incidents.IncidentFiling": _incident_team_join,
    "incidents.IncidentScope": _incident_team_join,
    "incidents.IncidentScopeKey": _incident_team_join,
    "incidents.IncidentAffected": _incident_team_join,
    "incidents.IncidentNotice": _incident_team_join,
    "incidents.IncidentCorrectiveAction": _incident_team_join,
    "consent.DataSubjectRequest": _request_handler_join,
    "consent.IdentityVerification": _request_handler_join,
    "consent.RequestMessage": _request_handler_join,
    "consent.RequestCompletion": _request_handler_join,
    "consent.DisclosurePackage": _request_handler_join,
}


# Model label → (how to make one row belonging to `team`, the permissions the admin page needs besides the
# model's own view permission, whether the row belongs to a team at all). A row that belongs to no team
# (a tombstone names nobody) is shown to every holder of the model permission.
ADMIN_ROWS: dict[str, tuple[Callable[[Team], Any], list[str], bool]] = {
    "crm.Customer": (_customer_of, [], True),
    "crm.LegalHold": (_legal_hold_of, ["crm.view_customer"], True),
    "crm.Tombstone": (_tombstone, [], False),
    "consent.ConsentEvent": (_consent_event_of, ["crm.view_customer"], True),
    "consent.ConsentState": (_consent_state_of, ["crm.view_customer"], True),
    "consent.SpecialCareRecord": (_special_care_record_of, ["crm.view_customer"], True),
    "consent.Objection": (_objection_of, ["crm.view_customer"], True),
    "consent.ProvisionRecord": (_provision_record_of, ["crm.view_customer"], True),
    "consent.ReceiptRecord": (_receipt_record_of, ["crm.view_customer"], True),
    "incidents.Incident": (_incident_of, [], True),
    "consent.DataSubjectRequest": (_request_of, [], True),
    "consent.DisclosurePackage": (_disclosure_package_of, ["consent.view_datasubjectrequest"], True),
    "crm.PurchaseImport": (_purchase_import_of, ["crm.view_customer"], True),
    "crm.RfmScore": (_rfm_score_of, ["crm.view_customer"], True),
    "crm.ClvScore": (_clv_score_of, ["crm.view_customer"], True),
}

# Admins of models that hold no personal data of customers, and why.
NOT_PERSONAL_ADMINS = {
    "crm.Team": "business units (names of teams)",
    "crm.TeamMembership": "staff users' places in teams",
    "crm.AuditEntry": "the audit trail, personal values redacted before they reach it; own permission",
    "crm.ApiClient": "integration clients (a name, a team, hashed tokens)",
    "crm.RetentionPolicy": "rules (trigger × action × scope)",
    "crm.RetentionRun": "progress counts of a run",
    "consent.Purpose": "published purposes of use",
    "consent.Recipient": "organisations data is given to, their contracts, audits and transfer bases",
    "consent.DataSystem": "systems of the data map (names, places, owners)",
    "consent.DataFlow": "flows between systems and recipients (purpose, frequency)",
    "crm.MarketingSpend": "spend totals per channel and month",
    "crm.CampaignResult": "e-mail campaign totals (counts)",
    "crm.Segment": "definitions; members are computed through restrict() for the viewer (tests/crm/insights)",
    "crm.SegmentExport": "export records: counts, column names, the anonymisation report",
}

REGISTERED = sorted(
    m._meta.label for m in admin.site._registry if m._meta.app_label in ("crm", "consent", "incidents")
)


def test_every_admin_is_in_the_matrix_or_holds_no_personal_data():
    # given every admin registered by the project's apps
    # then each one reaching personal data has its row maker here (and so runs the generated tests), and
    # each other one says why it holds none
    missing = [label for label in REGISTERED if label not in ADMIN_ROWS and label not in NOT_PERSONAL_ADMINS]
    assert missing == []
    for label in ADMIN_ROWS:
        model = apps.get_model(label)
        assert isinstance(model._default_manager.get_queryset(), RestrictedQuerySet), label


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("label", sorted(ADMIN_ROWS))
def test_admin_shows_a_row_exactly_to_whom_the_gate_opens_it(client, team, other_team, label, case):
    # given a row belonging to `team`, and a user of the case holding the model permissions the page needs
    make, extra_perms, owned = ADMIN_ROWS[label]
    row = make(team)
    model = type(row)
    opts = model._meta
    user = _user(
        case, [f"{opts.app_label}.view_{opts.model_name}", *extra_perms], team, other_team, label, row
    )
    client.force_login(user)
    expected = {
        "no_permission": False,
        "model_permission_only": not owned,
        "own_team": True,
        "other_team": not owned,
    }[case]

    # when the user opens the list and the row's page
    listing = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    page = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk]))

    # then without the model permission both are refused; with it, the list shows the row and its page opens
    # exactly when the gate opens it, and a row outside the user's scope looks like no row at all
    if case == "no_permission":
        assert (listing.status_code, page.status_code) == (403, 403)
        return
    assert listing.status_code == 200
    listed = {obj.pk for obj in listing.context["cl"].result_list}
    assert (row.pk in listed) is expected
    if expected:
        assert page.status_code == 200
    else:
        assert page.status_code == 302  # the admin's "does not exist" redirect, as for an unknown id
        assert page["Location"] == reverse("admin:index")
    assert model.objects.restrict(user, "view").filter(pk=row.pk).exists() is expected


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES)
def test_the_package_download_opens_exactly_to_whom_the_gate_opens_it(
    client, team, other_team, case, settings, tmp_path
):
    # given a ready disclosure package of a customer of `team`, and a user of the case with a link for them
    from consent.disclosure import selectors as package_selectors
    from consent.disclosure import services as package_services

    settings.DISCLOSURE_PACKAGE_DIR = str(tmp_path)
    package = _disclosure_package_of(team)
    package_services.disclosure_package_build(package_id=package.pk)
    label = "consent.DisclosurePackage"
    perms = ["consent.view_disclosurepackage", "consent.view_datasubjectrequest"]
    user = _user(case, perms, team, other_team, label, package)
    client.force_login(user)
    token = package_selectors.download_token(package=package, user=user)
    # when the user follows it
    answer = client.get(reverse("admin:consent_disclosurepackage_download", args=[package.pk, token]))
    # then only the request's handler gets the file; without the model permission it is refused; anyone
    # else is told no such package exists
    if case == "own_team":
        assert answer.status_code == 200 and answer["Content-Type"] == "application/zip"
    elif case == "no_permission":
        assert answer.status_code == 403
    else:
        assert answer.status_code == 302 and answer["Location"] == reverse("admin:index")


# --- the integration API -------------------------------------------------------------------------------

# Operation → how to call it naming the customer with external id `ext` (method, path, body), and the
# status it answers when the customer is within the client's reach.
ApiCall = Callable[[str], tuple[str, str, Any]]
API_CALLS: dict[tuple[str, str], tuple[ApiCall, int]] = {
    ("put", "/customers/{external_id}"): (
        lambda ext: ("PUT", f"/customers/{ext}", {"given_name": "変更"}),
        200,
    ),
    ("get", "/customers/{external_id}/consents"): (
        lambda ext: ("GET", f"/customers/{ext}/consents", None),
        200,
    ),
    ("post", "/events"): (
        lambda ext: (
            "POST",
            "/events",
            {"kind": "page_view", "occurred_at": "2026-04-01T10:00:00+09:00", "external_id": ext},
        ),
        201,
    ),
    ("post", "/purchases"): (
        lambda ext: (
            "POST",
            "/purchases",
            {
                "order_no": f"GATE-{uuid.uuid4().hex[:12]}",
                "amount": 1000,
                "channel": "web_form",
                "purchased_at": "2026-04-01T10:00:00+09:00",
                "external_id": ext,
            },
        ),
        201,
    ),
    ("post", "/consents"): (
        lambda ext: (
            "POST",
            "/consents",
            {"purpose_code": "marketing_email", "action": "grant", "method": "opt_in", "external_id": ext},
        ),
        201,
    ),
    ("post", "/objections"): (
        lambda ext: ("POST", "/objections", {"external_id": ext, "scope": "direct_marketing"}),
        201,
    ),
    ("post", "/requests"): (
        lambda ext: ("POST", "/requests", {"kind": "disclosure", "requester": {}, "external_id": ext}),
        201,
    ),
    ("post", "/visitors/{visitor_id}/link"): (
        lambda ext: ("POST", f"/visitors/visitor-{uuid.uuid4().hex[:8]}/link", {"external_id": ext}),
        200,
    ),
}

# Operations that name no customer, and why.
NO_CUSTOMER_ENDPOINTS = {
    ("get", "/health"): "liveness, no data",
    ("get", "/visitors/{visitor_id}/consents"): "an anonymous visitor id's cookie choices",
    ("get", "/cookie-consents/categories"): "published cookie categories",
    ("post", "/cookie-consents"): "an anonymous visitor's cookie choices (publishable key)",
    ("options", "/cookie-consents"): "CORS preflight",
    ("post", "/incidents"): (
        "opens a breach incident (incidents:write): names no customer, answers no personal data, and its "
        "service user gains no view of incidents (tests/incidents/test_api.py)"
    ),
}


def _operations() -> list[tuple[str, str]]:
    from config.api import api

    prefix = "/api/v1"
    schema = api.get_openapi_schema()
    return sorted(
        (method, path.removeprefix(prefix)) for path, ops in schema["paths"].items() for method in ops
    )


def test_every_api_operation_is_in_the_matrix_or_names_no_customer():
    # given every operation of the API's own schema
    # then each one naming a customer has its call here (and so runs the generated tests), and each other
    # one says why it names none
    missing = [op for op in _operations() if op not in API_CALLS and op not in NO_CUSTOMER_ENDPOINTS]
    assert missing == []


def _client_for(case: str, team: Team, other_team: Team) -> Any:
    """An API client for one case: its service user has no role, a role but no team, or its team."""
    client, token = integration_services.api_client_create(
        name=f"gate-{case}",
        team=other_team if case == "other_team" else team,
        scopes=SERVER_SCOPES,
    )
    user = client.user
    if case == "no_permission":
        user.groups.clear()
    if case == "model_permission_only":
        services.team_member_remove(membership=TeamMembership.objects.get(user=user))
    return token


def _customer_fingerprint(customer: Customer) -> tuple[Any, ...]:
    customer.refresh_from_db()
    return (
        customer.updated_at,
        customer.given_name,
        customer.events.count(),
        customer.purchases.count(),
        ConsentEvent.objects.filter(customer_id=customer.pk).count(),
        Objection.objects.filter(customer_id=customer.pk).count(),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("operation", sorted(API_CALLS))
def test_api_reaches_a_customer_exactly_when_the_gate_opens_it(
    clean_rate_limits, team, other_team, operation, case
):
    # given a customer of `team` with an external id, and a client of the case
    call, ok_status = API_CALLS[operation]
    target = CustomerFactory(team=team, external_id="GATE-1")
    api = Api(_client_for(case, team, other_team))
    before = _customer_fingerprint(target)

    # when the client calls the operation naming the customer, and naming an id nobody uses
    method, path, body = call("GATE-1")
    answer = api.call(method, path, body)
    method, path, body = call("GATE-UNUSED")
    unused = api.call(method, path, body)

    # then its own team's client reaches the customer; any other client gets exactly the answer an unused
    # id gets (it cannot tell that the customer exists) and the customer is untouched
    if case == "own_team":
        assert answer.status_code == ok_status, answer.content
        return
    assert answer.status_code == unused.status_code, (answer.content, unused.content)
    assert answer.status_code in (201, 403, 404, 422)  # a new customer of its own team, refused, not found
    assert _customer_fingerprint(target) == before
    if operation[0] == "get":
        assert answer.status_code == 404


# --- the gate itself, for every model behind it ------------------------------------------------------------


def _purchase_of(team: Team) -> Any:
    return services.purchase_record(
        team=team,
        customer=_customer_of(team),
        order_no=f"GATE-{uuid.uuid4().hex[:12]}",
        amount=1000,
        currency="JPY",
        channel="web_form",
        purchased_at="2026-04-01T10:00:00+09:00",
    )


def _event_of(team: Team) -> Any:
    return services.event_record(
        kind="page_view",
        occurred_at="2026-04-01T10:00:00+09:00",
        customer=_customer_of(team),
        visitor_id="",
        properties={},
        source="gate",
    )


def _visitor_link_of(team: Team) -> Any:
    from consent.models import VisitorLink

    customer = _customer_of(team)
    consent_services.visitor_link(visitor_id=f"visitor-{uuid.uuid4().hex[:8]}", customer=customer)
    return VisitorLink.objects.get(customer=customer)


def _idempotency_record_of(team: Team) -> Any:
    from crm.integrations.models import IdempotencyRecord

    client, _token = integration_services.api_client_create(
        name=f"gate-{uuid.uuid4().hex[:6]}", team=team, scopes=SERVER_SCOPES
    )
    record = IdempotencyRecord(
        client=client,
        key="k",
        fingerprint="f" * 64,
        response_status=201,
        response_body="{}",
        expires_at=IdempotencyRecord.default_expiry(),
    )
    record.save()
    return record


# Models behind the gate without an admin of their own: their row makers (with ADMIN_ROWS, every model).
GATE_ROWS: dict[str, tuple[Callable[[Team], Any], list[str], bool]] = {
    **ADMIN_ROWS,
    "crm.Purchase": (_purchase_of, ["crm.view_customer"], True),
    "crm.CustomerEvent": (_event_of, ["crm.view_customer"], True),
    "consent.VisitorLink": (_visitor_link_of, ["crm.view_customer"], True),
    "crm.IdempotencyRecord": (_idempotency_record_of, ["crm.view_customer"], True),
    "incidents.IncidentTimelineEntry": (_incident_timeline_entry_of, ["incidents.view_incident"], True),
    "incidents.IncidentFiling": (_incident_filing_of, ["incidents.view_incident"], True),
    "incidents.IncidentScope": (_incident_scope_of, ["incidents.view_incident"], True),
    "incidents.IncidentScopeKey": (_incident_scope_key_of, ["incidents.view_incident"], True),
    "incidents.IncidentAffected": (_incident_affected_of, ["incidents.view_incident"], True),
    "incidents.IncidentNotice": (_incident_notice_of, ["incidents.view_incident"], True),
    "incidents.IncidentCorrectiveAction": (_incident_corrective_action_of, ["incidents.view_incident"], True),
    "consent.ProvisionSubject": (
        lambda t: _provision_record_of(t).subjects.get(),
        ["crm.view_customer"],
        True,
    ),
    "consent.ReceiptSubject": (lambda t: _receipt_record_of(t).subjects.get(), ["crm.view_customer"], True),
    "consent.Recipient": (_recipient, [], False),
    "consent.ProcessorContract": (_contract, [], False),
    "consent.ProcessorAudit": (_audit, [], False),
    "consent.CrossBorderBasis": (_basis, [], False),
    "consent.DataSystem": (_system, [], False),
    "consent.DataFlow": (_flow, [], False),
    "consent.IdentityVerification": (
        _request_part_of("verification"),
        ["consent.view_datasubjectrequest"],
        True,
    ),
    "consent.RequestMessage": (_request_part_of("message"), ["consent.view_datasubjectrequest"], True),
    "consent.RequestCompletion": (_request_part_of("completion"), ["consent.view_datasubjectrequest"], True),
}


def _restricted_models() -> list[str]:
    return sorted(
        m._meta.label
        for m in apps.get_models()
        if isinstance(m._default_manager.get_queryset(), RestrictedQuerySet)
    )


def test_every_model_behind_the_gate_has_its_row_maker():
    # given every model whose default manager has restrict(), then each one runs the generated gate test
    assert [label for label in _restricted_models() if label not in GATE_ROWS] == []


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("label", sorted(GATE_ROWS))
def test_restrict_opens_a_row_exactly_to_whom_it_belongs(team, other_team, label, case):
    # given a row belonging to `team`, and a user of the case holding the model permissions
    make, extra_perms, owned = GATE_ROWS[label]
    row = make(team)
    opts = type(row)._meta
    user = _user(
        case, [f"{opts.app_label}.view_{opts.model_name}", *extra_perms], team, other_team, label, row
    )
    # when the gate is asked for the rows the user may view, change and delete
    visible = type(row).objects.restrict(user, "view").filter(pk=row.pk).exists()
    # then the row is there for its team's member (or, for a row of no team, for any holder of the model
    # permission), never without the model permission, never for another team; and nobody here may change
    # or delete it (no change/delete model permission was given)
    expected = {"no_permission": False, "model_permission_only": not owned, "own_team": True}.get(
        case, not owned
    )
    assert visible is expected
    for action in ("change", "delete"):
        assert not type(row).objects.restrict(user, action).filter(pk=row.pk).exists()


# --- the gate is the only copy of the rule -------------------------------------------------------------


def test_every_model_holding_or_pointing_to_personal_data_has_the_gate():
    # given every model of the project's apps
    # when one has a personal field in the classification registry or a foreign key to a customer, or is one
    # of the records the issue names (tombstones, API idempotency records)
    named = {"crm.Tombstone", "crm.IdempotencyRecord", "crm.LegalHold", "crm.Purchase", "crm.CustomerEvent"}
    personal = []
    for model in apps.get_models():
        if model._meta.app_label not in ("crm", "consent", "incidents"):
            continue
        label = model._meta.label
        points_to_customer = any(
            f.is_relation and f.related_model is Customer for f in model._meta.concrete_fields
        )
        if REGISTRY.personal_fields(label) or points_to_customer or label in named or model is Customer:
            personal.append(model)
    # then its default manager's queryset is a RestrictedQuerySet (restrict(user, action) on it)
    assert len(personal) >= 10
    missing = [
        m._meta.label
        for m in personal
        if not isinstance(m._default_manager.get_queryset(), RestrictedQuerySet)
    ]
    assert missing == []


# guardian's permission tables (by table or model name) and other spellings of the rule: only the gate reads
# them. A module that needs "which customers" asks restrict().
FORBIDDEN = re.compile(
    r"teamuserobjectpermission|teamgroupobjectpermission|guardian_userobjectpermission"
    r"|guardian_groupobjectpermission|userobjectpermission|groupobjectpermission|auth_user_groups"
    r"|get_objects_for_user|ObjectPermissionChecker|team_id\"? = ANY"
    r"|_all_customers",
    re.IGNORECASE,
)
# The gate; the models and migrations that define the tables; the classification of their fields; the
# incidents' own rule (a subclass of the gate's queryset, beside its direct-FK permission tables).
GATE_FILES = {
    "crm/permissions.py",
    "crm/models.py",
    "crm/field_classes.py",
    "incidents/models.py",
    "incidents/field_classes.py",
}


def test_no_module_but_the_gate_reads_guardians_tables_or_copies_the_rule():
    # given every Python module of the project's apps and settings (migrations define tables: left out)
    offenders = []
    for app in ("crm", "consent", "incidents", "config"):
        for path in sorted((ROOT / app).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in GATE_FILES or "/migrations/" in rel:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if FORBIDDEN.search(line):
                    offenders.append(f"{rel}:{number}: {line.strip()}")
    # then none reads guardian's tables, spells the rule with an id array, or grants "all customers" itself
    assert offenders == []
