"""The consent ledger: recording, validation, append-only (ORM and database), current state, visitors."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from consent import selectors, services
from consent.models import ConsentEvent, ConsentState, LedgerImmutableError, Purpose
from tests.consent.conftest import at, purpose_revised

pytestmark = pytest.mark.django_db


def test_a_grant_is_one_ledger_row_with_its_evidence(customer, owner):
    # given a customer who ticks the newsletter box on the web form
    evidence = {
        "form_id": "signup-2026-04",
        "source_ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (iPhone)",
    }
    # when the consent is recorded
    event = services.consent_record(
        purpose_code="marketing_email",
        action="grant",
        method="opt_in",
        channel="web_form",
        customer=customer,
        evidence=evidence,
        occurred_at=at("2026-04-01 10:00"),
        actor=owner,
    )
    # then one row holds the version shown, its text hash, the evidence and both timestamps
    event = ConsentEvent.objects.get(pk=event.pk)
    version = Purpose.objects.get(code="marketing_email").current_version
    assert ConsentEvent.objects.count() == 1
    assert event.purpose_version == version
    assert event.text_hash == version.text_hash
    assert (event.form_id, event.source_ip, event.user_agent) == (
        "signup-2026-04",
        "203.0.113.7",
        "Mozilla/5.0 (iPhone)",
    )
    assert event.operator == owner
    assert event.occurred_at == at("2026-04-01 10:00")
    assert event.recorded_at > event.occurred_at
    assert str(event) == f"同意台帳 #{event.pk}"


def test_the_evidence_address_is_encrypted_at_rest(customer, grant):
    # given a consent with a source address
    event = grant(customer, evidence={"source_ip": "203.0.113.7"})
    # when the raw column is read
    with connection.cursor() as cur:
        cur.execute("SELECT source_ip FROM consent_consentevent WHERE id = %s", [event.pk])
        raw = cur.fetchone()[0]
    # then the database holds a token, not the address
    assert "203.0.113.7" not in raw


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"purpose_code": "no_such_purpose"}, "登録されていないか"),
        ({"customer": None}, "顧客または訪問者ID"),
        ({"action": "maybe"}, "操作"),
        ({"channel": "carrier_pigeon"}, "経路"),
        ({"evidence": {"password": "x"}}, "証跡の項目"),
        ({"evidence": {"text_hash": "abc"}}, "SHA-256"),
        ({"evidence": {"source_ip": "not-an-ip"}}, "IPアドレス"),
        ({"occurred_at": at("2099-01-01 00:00")}, "未来"),
        ({"purpose_code": "special_care_health", "method": "opt_out"}, "法第20条第2項"),
        ({"purpose_code": "cross_border_transfer", "method": "opt_out"}, "法第28条第1項"),
    ],
)
def test_bad_input_is_refused_in_japanese_and_nothing_is_written(customer, kwargs, message):
    # given a valid call changed in one respect
    call = {
        "purpose_code": "marketing_email",
        "action": "grant",
        "method": "opt_in",
        "channel": "web_form",
        "customer": customer,
        **kwargs,
    }
    # when it is recorded
    with pytest.raises(ValidationError) as exc:
        services.consent_record(**call)
    # then the error explains in Japanese and the ledger is empty
    assert message in " ".join(exc.value.messages)
    assert ConsentEvent.objects.count() == 0
    assert ConsentState.objects.count() == 0


def test_an_unpublished_purpose_takes_no_consent(customer):
    # given a purpose taken off the public page
    services.purpose_update_settings(purpose=Purpose.objects.get(code="personalisation"), is_published=False)
    # when a consent is recorded for it
    # then it is refused
    with pytest.raises(ValidationError, match="公表されていません"):
        services.consent_record(
            purpose_code="personalisation", action="grant", method="opt_in", channel="app", customer=customer
        )


def test_the_orm_refuses_to_change_or_delete_a_ledger_row(customer, grant):
    # given a recorded consent
    event = grant(customer)
    # when it is edited, deleted, or rewritten in bulk
    event.action = ConsentEvent.Action.WITHDRAW
    # then every ORM path refuses
    with pytest.raises(LedgerImmutableError):
        event.save()
    with pytest.raises(LedgerImmutableError):
        event.delete()
    with pytest.raises(LedgerImmutableError):
        ConsentEvent.objects.filter(pk=event.pk).update(action="withdraw")
    with pytest.raises(LedgerImmutableError):
        ConsentEvent.objects.filter(pk=event.pk).delete()
    assert ConsentEvent.objects.get(pk=event.pk).action == ConsentEvent.Action.GRANT


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE consent_consentevent SET action = 'withdraw' WHERE id = %s",
        "DELETE FROM consent_consentevent WHERE id = %s",
    ],
)
def test_the_database_refuses_update_and_delete_on_the_ledger(customer, grant, sql):
    # given a recorded consent
    event = grant(customer)
    # when raw SQL tries to rewrite or remove it (bypassing the ORM entirely)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute(sql, [event.pk])
    # then the row is still there, unchanged
    assert ConsentEvent.objects.get(pk=event.pk).action == ConsentEvent.Action.GRANT


@pytest.mark.parametrize(
    "tables",
    [
        "consent_consentevent",
        "consent_purposeversion",
        "crm_auditentry",
        "crm_auditchainhead",
        "crm_customer",  # cascades into the ledger
    ],
)
def test_the_database_refuses_truncate_of_the_ledger_and_the_audit_trail(customer, grant, tables):
    # given a recorded consent (with its audit entry), on a session that has not lifted the guard (the test
    # suite lifts it on its connections to flush between tests: turned off again here)
    from crm.models import AuditEntry

    event = grant(customer)
    entries = AuditEntry.objects.count()
    # when raw SQL tries to empty the table
    with pytest.raises(DatabaseError, match="TRUNCATE"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL crm.allow_truncate = off")
        cur.execute(f"TRUNCATE {tables} CASCADE")
    # then the ledger row and the audit trail are still there
    assert ConsentEvent.objects.filter(pk=event.pk).exists()
    assert AuditEntry.objects.count() == entries


def test_current_state_follows_grant_withdraw_grant(customer, grant, withdraw):
    # given a customer who grants, withdraws and grants again on different days
    grant(customer, when=at("2026-04-01 10:00"))
    assert selectors.consent_state(customer=customer)["marketing_email"]["granted"] is True
    withdraw(customer, when=at("2026-04-02 10:00"), channel="app")
    assert selectors.consent_state(customer=customer)["marketing_email"]["granted"] is False
    last = grant(customer, when=at("2026-04-03 10:00"), channel="store_pos")
    # when the state is read
    state = selectors.consent_state(customer=customer)
    # then it is the last event's, the ledger holds three rows and the state table one
    assert state["marketing_email"] == {
        "granted": True,
        "version": 1,
        "at": at("2026-04-03 10:00"),
        "channel": "store_pos",
    }
    assert ConsentEvent.objects.filter(customer=customer).count() == 3
    assert ConsentState.objects.get(customer=customer).event_id == last.pk


def test_a_late_arriving_older_event_does_not_override_a_newer_decision(customer, grant, withdraw):
    # given a withdrawal on 2026-04-05 through the app
    withdraw(customer, when=at("2026-04-05 09:00"), channel="app")
    # when a paper form signed on 2026-04-01 is keyed in afterwards
    grant(customer, when=at("2026-04-01 12:00"), channel="paper")
    # then both are in the ledger but the state stays withdrawn (newest occurred_at wins)
    assert selectors.consent_state(customer=customer)["marketing_email"]["granted"] is False
    assert ConsentEvent.objects.filter(customer=customer).count() == 2


def test_state_records_the_version_consented_to(customer, grant, privacy_officer):
    # given a consent to version 1, then the text changes
    grant(customer, when=at("2026-04-01 10:00"))
    purpose = Purpose.objects.get(code="marketing_email")
    purpose_revised(purpose, description_ja="新しい説明", description_en="New description")
    # when the state is read, and the customer consents again
    before = selectors.consent_state(customer=customer)["marketing_email"]["version"]
    grant(customer, when=at("2026-05-01 10:00"))
    after = selectors.consent_state(customer=customer)["marketing_email"]["version"]
    # then the state says which version each consent was given to
    assert (before, after) == (1, 2)


def test_consent_state_at_a_past_instant_comes_from_the_ledger(customer, grant, withdraw):
    # given grant on 04-01 and withdrawal on 04-10
    grant(customer, when=at("2026-04-01 10:00"))
    withdraw(customer, when=at("2026-04-10 10:00"))
    # then the ledger answers for any past instant
    assert selectors.consent_state_at(
        customer=customer, purpose_code="marketing_email", at=at("2026-04-05 00:00")
    )
    assert not selectors.consent_state_at(
        customer=customer, purpose_code="marketing_email", at=at("2026-04-11 00:00")
    )
    assert not selectors.consent_state_at(
        customer=customer, purpose_code="marketing_email", at=at("2026-03-31 00:00")
    )


def test_withdrawal_is_one_call_like_granting(customer):
    # given a consent given with one call
    services.consent_grant(customer=customer, purpose_code="personalisation", channel="app")
    # when it is withdrawn with one call
    services.consent_withdraw(customer=customer, purpose_code="personalisation", channel="app")
    # then it is withdrawn
    assert selectors.consent_state(customer=customer)["personalisation"]["granted"] is False


def test_visitor_consent_is_linked_to_the_customer_once_identified(customer, grant, withdraw):
    # given a cookie-banner visitor who accepts analytics cookies and refuses advertising ones
    grant(
        None,
        code="cookies_analytics",
        visitor_id="v-123",
        channel="cookie_banner",
        when=at("2026-04-01 10:00"),
    )
    withdraw(
        None,
        code="cookies_advertising",
        visitor_id="v-123",
        channel="cookie_banner",
        when=at("2026-04-01 10:00"),
    )
    assert selectors.visitor_consent_state(visitor_id="v-123")["cookies_analytics"]["granted"] is True
    # when the visitor logs in as the customer (twice: the link is idempotent)
    first = services.visitor_link(visitor_id="v-123", customer=customer)
    second = services.visitor_link(visitor_id="v-123", customer=customer)
    # then both decisions are carried over as new rows pointing back at the visitor's rows
    state = selectors.consent_state(customer=customer)
    assert (first, second) == (2, 0)
    assert state["cookies_analytics"]["granted"] is True
    assert state["cookies_advertising"]["granted"] is False
    copies = ConsentEvent.objects.filter(customer=customer)
    assert all(c.source_event_id and c.source_event.customer_id is None for c in copies)
    assert ConsentEvent.objects.filter(customer__isnull=True, visitor_id="v-123").count() == 2


def test_after_linking_a_visitor_consent_goes_to_the_customer(customer, grant):
    # given a linked visitor id
    services.visitor_link(visitor_id="v-9", customer=customer)
    # when the banner records a consent for the visitor id only
    event = grant(None, code="cookies_analytics", visitor_id="v-9", channel="cookie_banner")
    # then it is recorded for the customer
    assert event.customer_id == customer.pk
    assert selectors.consent_state(customer=customer)["cookies_analytics"]["granted"] is True


def test_a_visitor_id_linked_to_one_customer_cannot_be_linked_to_another(customer, foreign_customer):
    # given a visitor linked to one customer
    services.visitor_link(visitor_id="v-1", customer=customer)
    # when someone links it to another customer
    # then it is refused
    with pytest.raises(ValidationError, match="別の顧客"):
        services.visitor_link(visitor_id="v-1", customer=foreign_customer)


def test_unknown_visitor_has_no_state():
    # given nothing recorded for a visitor
    # then their state is empty (not granted)
    assert selectors.visitor_consent_state(visitor_id="nobody") == {}
    assert selectors.visitor_consent_state(visitor_id="") == {}


def test_the_state_table_can_be_rebuilt_from_the_ledger(customer, teammate_customer, grant, withdraw):
    # given a history over two customers, with a late-arriving older event
    grant(customer, when=at("2026-04-01 10:00"))
    withdraw(customer, when=at("2026-04-03 10:00"))
    grant(customer, when=at("2026-04-02 10:00"), channel="paper")
    grant(teammate_customer, code="analytics", when=at("2026-04-01 10:00"))
    before = {c.pk: selectors.consent_state(customer=c) for c in (customer, teammate_customer)}
    # when the derived table is lost and rebuilt
    ConsentState.objects.all().delete()
    written = services.consent_state_rebuild()
    # then it is exactly what the service kept, and a second rebuild changes nothing
    assert written == 2
    assert {c.pk: selectors.consent_state(customer=c) for c in (customer, teammate_customer)} == before
    assert services.consent_state_rebuild() == 0


def test_erasing_a_customer_keeps_the_proof_and_drops_the_derived_data(customer, grant):
    # given a customer with a consent, a linked cookie id and health data recorded under consent
    from consent.models import SpecialCareRecord, VisitorLink
    from crm.models import Customer

    event = grant(customer, code="special_care_health", evidence={"form_id": "F-1"})
    services.visitor_link(visitor_id="v-erase", customer=customer)
    services.special_care_record_create(
        customer=customer, purpose_code="special_care_health", kind="medical_history", content="喘息"
    )
    customer_pk = customer.pk
    # when the customer is erased (deleted) through the ORM, as the erasure service does
    Customer.objects.filter(pk=customer_pk).delete()
    # then the ledger row is intact, while state, cookie link and health data are gone with the person
    kept = ConsentEvent.objects.get(pk=event.pk)
    assert (kept.customer_id, kept.action, kept.form_id) == (customer_pk, "grant", "F-1")
    assert not ConsentState.objects.filter(customer_id=customer_pk).exists()
    assert not VisitorLink.objects.filter(visitor_id="v-erase").exists()
    assert not SpecialCareRecord.objects.filter(customer_id=customer_pk).exists()


def test_linking_a_visitor_is_audited_without_the_visitor_id(customer, owner):
    from django.contrib.contenttypes.models import ContentType

    from consent.models import VisitorLink
    from crm.models import AuditEntry

    # given a visitor id seen on the website
    # when staff link it to the identified customer (twice: the second changes nothing)
    services.visitor_link(visitor_id="v-audit-77", customer=customer, actor=owner)
    services.visitor_link(visitor_id="v-audit-77", customer=customer, actor=owner)

    # then exactly one create entry names the actor, and the visitor id is not in it in clear
    link = VisitorLink.objects.get(visitor_id="v-audit-77")
    entries = AuditEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(VisitorLink), object_pk=str(link.pk)
    )
    assert [(e.action, e.actor_id) for e in entries] == [(AuditEntry.Action.CREATE, owner.pk)]
    assert "v-audit-77" not in str(entries[0].changes) + entries[0].object_repr


# --- the API's first lookup: customer and purpose in one round trip -----------------------------------------


@pytest.mark.parametrize(
    ("who", "external_id", "code", "finds_customer", "finds_purpose"),
    [
        ("owner", "LEDGER-1", "marketing_email", True, True),
        ("outsider", "LEDGER-1", "marketing_email", False, True),  # another team's customer
        ("owner", "NO-SUCH", "marketing_email", False, True),
        ("owner", "LEDGER-1", "no_such_purpose", True, False),
        ("owner", "LEDGER-1", "personalisation", True, False),  # unpublished below
    ],
)
def test_consent_subjects_answer_as_the_two_lookups_do(
    request, customer, who, external_id, code, finds_customer, finds_purpose
):
    # given a customer with an external id and a purpose taken off the public page
    from crm.models import Customer
    from crm.selectors import customer_ref

    Customer.objects.filter(pk=customer.pk).update(external_id="LEDGER-1")
    services.purpose_update_settings(purpose=Purpose.objects.get(code="personalisation"), is_published=False)
    user = request.getfixturevalue(who)
    # when both are asked in one statement
    with CaptureQueriesContext(connection) as ctx:
        found_customer, found_purpose, reserved = selectors.consent_subjects(
            user=user, team_id=customer.team_id, external_id=external_id, purpose_code=code
        )
    assert reserved is None  # no ledger id taken unless asked
    # then the answers are those of customer_ref and published_purpose, from one statement (the others
    # read the user's permissions and teams, which a request has loaded already)
    lookups = [
        q["sql"] for q in ctx.captured_queries if "consent_purpose" in q["sql"] or "crm_customer" in q["sql"]
    ]
    assert len(lookups) == 1
    expected_customer = customer_ref(user=user, team_id=customer.team_id, external_id=external_id)
    expected_purpose = selectors.published_purpose(code)
    assert (found_customer is not None) is finds_customer
    assert (found_purpose is not None) is finds_purpose
    if finds_customer:
        assert (found_customer.pk, found_customer.team_id, found_customer.status) == (
            expected_customer.pk,
            expected_customer.team_id,
            expected_customer.status,
        )
    if finds_purpose:
        assert found_purpose.pk == expected_purpose.pk
        assert found_purpose.current_version.pk == expected_purpose.current_version.pk
        assert found_purpose.current_version.text_hash == expected_purpose.current_version.text_hash
