"""The consent admin: read-only ledger, record/withdraw through services, scoped to viewable customers."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from consent import selectors
from consent.models import ConsentEvent, ConsentState, Purpose, SpecialCareRecord
from tests.consent.conftest import purpose_post
from tests.services import without_audit_id_reservation

pytestmark = pytest.mark.django_db

LEDGER = "admin:consent_consentevent_changelist"
ADD = "admin:consent_consentevent_add"
STATES = "admin:consent_consentstate_changelist"


def paper_consent(customer, **changes) -> dict:
    """The record form's fields for an opt-in marketing consent on a paper form."""
    return {
        "customer_id": customer.pk,
        "purpose": "marketing_email",
        "action": "grant",
        "method": "opt_in",
        "channel": "paper",
        **changes,
    }


def history(customer) -> str:
    return reverse("admin:consent_customer_history", args=[customer.pk])


def test_the_ledger_list_shows_only_customers_the_user_may_view(
    client, owner, outsider, customer, foreign_customer, grant
):
    # given a consent for a customer of each team
    mine = grant(customer)
    theirs = grant(foreign_customer)
    # when the owner opens the ledger
    client.force_login(owner)
    response = client.get(reverse(LEDGER))
    # then only their team's row is listed
    rows = list(response.context["cl"].result_list)
    assert response.status_code == 200
    assert rows == [mine]
    assert theirs not in rows


def test_the_ledger_can_be_searched_by_exact_customer_id(
    client, support_agent, customer, foreign_customer, grant
):
    # given consents of two customers and the support desk, who sees everyone
    grant(customer)
    grant(foreign_customer)
    client.force_login(support_agent)
    # when searching by one customer's id
    response = client.get(reverse(LEDGER), {"q": str(customer.pk)})
    # then only that customer's rows
    assert [e.customer_id for e in response.context["cl"].result_list] == [customer.pk]


def test_a_ledger_row_cannot_be_edited_or_deleted_even_by_a_superuser(client, superuser, customer, grant):
    # given a recorded consent
    event = grant(customer)
    client.force_login(superuser)
    change = reverse("admin:consent_consentevent_change", args=[event.pk])
    delete = reverse("admin:consent_consentevent_delete", args=[event.pk])
    # when the superuser opens it, posts a change and asks to delete it
    view = client.get(change)
    posted = client.post(change, {"action": "withdraw"})
    deleted = client.post(delete, {"post": "yes"})
    # then it is shown read-only and both writes are refused
    assert view.status_code == 200
    assert posted.status_code == 403
    assert deleted.status_code == 403
    assert ConsentEvent.objects.get(pk=event.pk).action == "grant"


def test_evidence_is_masked_without_the_personal_data_permission(
    client, owner, support_agent, customer, grant
):
    # given a consent with a source address
    event = grant(customer, evidence={"source_ip": "203.0.113.7"})
    url = reverse("admin:consent_consentevent_change", args=[event.pk])
    # when staff (masked) and the support desk (may see personal data) open it
    client.force_login(owner)
    masked = client.get(url).content.decode()
    client.force_login(support_agent)
    clear = client.get(url).content.decode()
    # then only the support desk sees the address
    assert "203.0.113.7" not in masked
    assert "203.0.113.7" in clear


def test_staff_record_a_paper_consent_for_their_teams_customer(client, owner, customer):
    # given the owner with a signed paper form
    client.force_login(owner)
    # when they fill the record form
    response = client.post(reverse(ADD), paper_consent(customer, form_id="PAPER-0001"))
    # then one ledger row with the owner as operator, and the customer's history page next
    event = ConsentEvent.objects.get()
    assert response.status_code == 302
    assert response["Location"] == history(customer)
    assert (event.customer, event.operator, event.channel, event.form_id) == (
        customer,
        owner,
        "paper",
        "PAPER-0001",
    )


def test_recording_for_another_teams_customer_is_refused(client, outsider, customer):
    # given a staff member of another team
    client.force_login(outsider)
    # when they try to record a consent for the customer
    response = client.post(reverse(ADD), paper_consent(customer))
    # then the form refuses and nothing is written
    assert response.status_code == 200
    assert "権限がないか" in response.content.decode()
    assert not ConsentEvent.objects.exists()


def test_an_invalid_recording_shows_the_japanese_reason(client, owner, customer):
    # given an opt-out "consent" to collecting health data
    client.force_login(owner)
    # when it is submitted
    response = client.post(
        reverse(ADD), paper_consent(customer, purpose="special_care_health", method="opt_out")
    )
    # then the page explains (APPI Art. 20(2)) and nothing is written
    assert "法第20条第2項" in response.content.decode()
    assert not ConsentEvent.objects.exists()


def test_the_support_desk_may_view_but_not_record(client, support_agent, customer, grant):
    # given the support desk
    grant(customer)
    client.force_login(support_agent)
    # then they read the history but the record form is refused
    page = client.get(history(customer))
    assert page.status_code == 200
    assert "同意を記録" not in page.content.decode()
    assert client.get(reverse(ADD)).status_code == 403


def test_customer_history_shows_state_and_every_row(client, owner, customer, grant, withdraw):
    # given a grant then a withdrawal
    grant(customer)
    withdraw(customer)
    client.force_login(owner)
    # when the customer's consent page is opened
    response = client.get(history(customer))
    body = response.content.decode()
    # then it shows the withdrawn state, both rows, and grant/withdraw links for the owner
    assert response.status_code == 200
    assert "撤回済み" in body
    assert len(response.context["history"]) == 2
    assert "action=withdraw" in body and "action=grant" in body


def test_customer_history_of_another_team_is_not_found(client, settings, outsider, customer, grant):
    # given a customer of the owner's team, and the development setting that shows Django's technical pages
    settings.DEBUG = True
    grant(customer)
    client.force_login(outsider)
    # when an outsider opens their consent page, and the customer's change page
    history_page = client.get(history(customer), follow=True)
    change_page = client.get(reverse("admin:crm_customer_change", args=[customer.pk]), follow=True)
    # then both behave alike: the admin index, with the same "does not exist" message
    assert history_page.redirect_chain == change_page.redirect_chain == [(reverse("admin:index"), 302)]
    shown = [[str(m) for m in page.context["messages"]] for page in (history_page, change_page)]
    assert shown[0] == shown[1] and len(shown[0]) == 1


def test_the_customer_page_links_to_the_consent_history(client, owner, customer):
    # given the owner on the customer's admin page
    client.force_login(owner)
    body = client.get(reverse("admin:crm_customer_change", args=[customer.pk])).content.decode()
    # then it links to the consent state and history
    assert history(customer) in body


def _act(client, action: str, states) -> None:
    client.post(
        reverse(STATES),
        {
            "action": action,
            ACTION_CHECKBOX_NAME: [s.pk for s in states],
            "apply": "1",
            "channel": "call_centre",
        },
    )


def test_withdraw_is_one_admin_action_like_grant(client, owner, customer, grant):
    # given a granted consent
    grant(customer)
    state = ConsentState.objects.get(customer=customer)
    client.force_login(owner)
    # when the owner runs 同意を撤回 on it, and later 同意を記録
    _act(client, "withdraw_selected", [state])
    withdrawn = selectors.consent_state(customer=customer)["marketing_email"]
    _act(client, "grant_selected", [state])
    granted = selectors.consent_state(customer=customer)["marketing_email"]
    # then each is one new ledger row through the same page
    assert (withdrawn["granted"], withdrawn["channel"]) == (False, "call_centre")
    assert granted["granted"] is True
    assert ConsentEvent.objects.filter(customer=customer).count() == 3


def test_the_withdraw_action_does_nothing_for_another_teams_customer(client, outsider, customer, grant):
    # given a granted consent of the owner's team
    grant(customer)
    state = ConsentState.objects.get(customer=customer)
    client.force_login(outsider)
    # when an outsider posts the action with its id
    _act(client, "withdraw_selected", [state])
    # then nothing is recorded
    assert selectors.consent_state(customer=customer)["marketing_email"]["granted"] is True


def test_the_privacy_officer_edits_a_purpose_into_a_new_version(client, privacy_officer):
    # given the marketing purpose at v1
    purpose = Purpose.objects.get(code="marketing_email")
    v1 = purpose.current_version
    client.force_login(privacy_officer)
    # when the officer changes its description in the admin
    response = client.post(
        reverse("admin:consent_purpose_change", args=[purpose.pk]),
        purpose_post(purpose, description_ja="配信頻度を明記しました。"),
    )
    # then v2 is current and v1 unchanged
    purpose.refresh_from_db()
    assert response.status_code == 302, response.content.decode()[:2000]
    assert purpose.current_version.version == 2
    assert purpose.current_version.description_ja == "配信頻度を明記しました。"
    assert purpose.versions.get(version=1).description_ja == v1.description_ja


def test_staff_cannot_change_purposes(client, owner):
    # given staff, who may read purposes
    purpose = Purpose.objects.get(code="marketing_email")
    client.force_login(owner)
    url = reverse("admin:consent_purpose_change", args=[purpose.pk])
    # when they open and post the purpose form
    # then they may read but not change it
    assert client.get(url).status_code == 200
    assert client.post(url, {"title_ja": "x"}).status_code == 403
    assert purpose.versions.count() == 1


def test_special_care_admin_refuses_without_consent(client, owner, customer):
    # given no consent to the health purpose
    client.force_login(owner)
    data = {
        "customer_id": customer.pk,
        "purpose": "special_care_health",
        "kind": "medical_history",
        "content": "喘息",
    }
    # when staff submit health data
    refused = client.post(reverse("admin:consent_specialcarerecord_add"), data)
    # then the form shows APPI Art. 20(2) and nothing is stored
    assert "第20条第2項" in refused.content.decode()
    assert not SpecialCareRecord.objects.exists()


def test_the_ledger_list_does_not_query_per_row(client, support_agent, customer, foreign_customer, grant):
    # given a few ledger rows over several purposes
    for code in ("marketing_email", "analytics", "personalisation"):
        grant(customer, code=code)
        grant(foreign_customer, code=code)
    client.force_login(support_agent)
    url = reverse(LEDGER)
    client.get(url)  # warm caches (content types, sessions)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # when the list is rendered with 6 rows, then with 8
    with CaptureQueriesContext(connection) as six:
        client.get(url)
    grant(customer, code="cookies_analytics")
    grant(foreign_customer, code="cookies_analytics")
    with CaptureQueriesContext(connection) as eight:
        client.get(url)
    # then the number of queries does not grow with the rows
    assert len(without_audit_id_reservation(eight)) == len(without_audit_id_reservation(six))


def test_the_privacy_officer_adds_a_purpose_with_its_first_version(client, privacy_officer):
    # given the privacy officer
    client.force_login(privacy_officer)
    # when they add a new purpose of use
    response = client.post(
        reverse("admin:consent_purpose_add"),
        {
            "code": "survey",
            "category": "analytics",
            "legal_basis": "consent",
            "is_published": "on",
            "display_order": 200,
            "title_ja": "アンケートの実施",
            "title_en": "Surveys",
            "description_ja": "商品改善のためのアンケートを実施するため。",
            "description_en": "To run surveys to improve our products.",
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
            "versions-MIN_NUM_FORMS": "0",
            "versions-MAX_NUM_FORMS": "1000",
        },
    )
    # then it exists at version 1, published, and shows on the public page
    purpose = Purpose.objects.get(code="survey")
    assert response.status_code == 302
    assert purpose.current_version.version == 1
    assert purpose.current_version.created_by == privacy_officer
    assert "アンケートの実施" in client.get("/privacy/").content.decode()


def test_the_support_desk_cannot_add_purposes(client, support_agent):
    # given the support desk, who may read purposes
    client.force_login(support_agent)
    # then the add form is refused
    assert client.get(reverse("admin:consent_purpose_add")).status_code == 403
    assert client.get(reverse("admin:consent_purpose_changelist")).status_code == 200


@pytest.fixture
def asthma_record(customer, grant):
    """A 要配慮 record of the customer, written with their consent (APPI Art. 20(2))."""
    from consent.services import special_care_record_create

    grant(customer, code="special_care_health")
    return special_care_record_create(
        customer=customer,
        purpose_code="special_care_health",
        kind="medical_history",
        content="喘息",
        actor=None,
    )


def _record_access_entries_of(model, object_pk):
    from django.contrib.contenttypes.models import ContentType

    from crm.audit.sealing import audit_seal_pending
    from crm.models import AuditEntry

    audit_seal_pending()
    return list(
        AuditEntry.objects.filter(
            action=AuditEntry.Action.ACCESS,
            content_type=ContentType.objects.get_for_model(model),
            object_pk=object_pk,
        )
    )


def _record_access_entries(record):
    return _record_access_entries_of(type(record), str(record.pk))


@pytest.mark.parametrize(("user_name", "clear"), [("support_agent", True), ("owner", False)])
def test_opening_a_special_care_record_writes_an_access_entry(
    request, client, asthma_record, user_name, clear
):
    # given a user who may view the customer
    user = request.getfixturevalue(user_name)
    client.force_login(user)
    # when they open the record
    response = client.get(reverse("admin:consent_specialcarerecord_change", args=[asthma_record.pk]))
    # then the content is shown in clear only with the personal-data permission …
    assert response.status_code == 200
    assert ("喘息" in response.content.decode()) is clear
    # … and an ACCESS entry names who opened which record, without the content
    [entry] = _record_access_entries(asthma_record)
    assert (entry.actor, entry.object_repr) == (user, f"要配慮個人情報 #{asthma_record.pk}")
    assert "喘息" not in f"{entry.changes} {entry.changes_text} {entry.additional_data} {entry.object_repr}"


def test_a_refused_special_care_record_writes_no_access_entry(client, outsider, asthma_record):
    # given a lead of another team
    client.force_login(outsider)
    # when they try the record, then they are sent away and nothing was accessed
    response = client.get(reverse("admin:consent_specialcarerecord_change", args=[asthma_record.pk]))
    assert response.status_code == 302
    assert not _record_access_entries(asthma_record)


def test_the_special_care_list_is_logged_with_the_records_shown(client, owner, asthma_record):
    # given the lead of the customer's team (masked)
    client.force_login(owner)
    # when they open the list of 要配慮 records
    assert client.get(reverse("admin:consent_specialcarerecord_changelist")).status_code == 200
    # then one ACCESS entry lists the record shown, as masked
    [entry] = _record_access_entries_of(SpecialCareRecord, "changelist")
    assert entry.actor == owner and entry.object_repr == "要配慮個人情報一覧（1件表示）"
    assert (entry.additional_data["list"]["ids"], entry.additional_data["list"]["clear"]) == (
        [asthma_record.pk],
        False,
    )


def test_the_ledger_list_and_a_ledger_row_are_logged(client, support_agent, customer, grant):
    # given a consent row (its evidence holds the source address and user agent)
    event = grant(customer)
    client.force_login(support_agent)
    # when the request desk opens the ledger list, then the row
    assert client.get(reverse(LEDGER)).status_code == 200
    assert client.get(reverse("admin:consent_consentevent_change", args=[event.pk])).status_code == 200
    # then one ACCESS entry names the rows listed, one the row opened
    listed, opened = _record_access_entries_of(ConsentEvent, "changelist"), _record_access_entries(event)
    assert [e.additional_data["list"]["ids"] for e in listed] == [[event.pk]]
    assert [(e.actor, e.object_repr) for e in opened] == [(support_agent, f"同意台帳 #{event.pk}")]
