"""A segment export to a recipient, end to end (issues #16 and #18): crm's export form offers the recipients
consent lists for the user, consent's recorder writes the provision record (APPI 29) through
provision_record before the first row, and a refused provision leaves nothing: no export, no audit entry,
no rows, a clear message on the form."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import translation

from consent import services as consent_services
from consent.models import ConsentEvent
from consent.provision import rules
from consent.provision.models import ProvisionRecord, Recipient
from consent.provision.services import ProvisionRefused
from crm import services as crm_services
from crm.insights import hooks
from crm.insights import services as insights_services
from crm.insights.admin import SegmentExportForm
from crm.insights.models import Segment, SegmentExport
from crm.models import AuditEntry, Customer, TeamMembership
from crm.permissions import ROLE_STAFF
from tests.factories import CustomerFactory, UserFactory

TO_RECIPIENT = SegmentExport.Destination.RECIPIENT


def _consent(customer: Customer, purpose: str = "marketing_email") -> None:
    consent_services.consent_record(
        purpose_code=purpose,
        action=ConsentEvent.Action.GRANT,
        method=ConsentEvent.Method.OPT_IN,
        channel=ConsentEvent.Channel.WEB_FORM,
        customer=customer,
    )


@pytest.fixture
def tokyo(db):
    return Segment.objects.create(name="東京", filters={"prefectures": ["13"]})


PROVIDER_PERMISSIONS = ("consent.add_provisionrecord", "consent.view_recipient", "crm.view_customer_pii")


def _with_permissions(user, names):
    for name in names:
        app_label, codename = name.split(".")
        permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
        user.user_permissions.add(permission)
    return type(user).objects.get(pk=user.pk)  # a fresh permission cache


@pytest.fixture
def provider(team):
    """A member of `team` who may write provision records, see the recipients and view personal data in
    clear (what is provided is what the record says: never masked values)."""
    user = UserFactory(username="provider", roles=[ROLE_STAFF])
    crm_services.team_member_add(team=team, user=user, role=TeamMembership.Role.MEMBER)
    return _with_permissions(user, PROVIDER_PERMISSIONS)


def _export(user, segment, recipient, purpose="marketing_email", **kwargs):
    return insights_services.segment_export_personal(
        user=user,
        segment=segment,
        purpose_code=purpose,
        destination=TO_RECIPIENT,
        recipient_ref=str(recipient.pk),
        **kwargs,
    )


def _export_audits() -> int:
    return AuditEntry.objects.filter(object_pk__startswith="segment-export:").count()


@pytest.mark.django_db
def test_the_provision_record_exists_before_the_first_row_and_the_rows_are_unchanged(
    tokyo, team, provider, partner
):
    # given a Tokyo segment: one customer who consented to e-mail, one who did not, one in stop-use
    consented = CustomerFactory(team=team, prefecture="13", email="taro@example.com")
    _consent(consented)
    CustomerFactory(team=team, prefecture="13")
    stopped = CustomerFactory(team=team, prefecture="13")
    _consent(stopped)
    Customer.objects.filter(pk=stopped.pk).update(status=Customer.Status.STOP_USE)
    # when the segment is exported to a domestic third party for the consent-based e-mail purpose
    export, rows = _export(provider, tokyo, partner)
    # then, before any row is produced, the record names the recipient, the people, the export's columns,
    # the basis (a third party: the person's consent, 27(1)) and the purpose
    record = ProvisionRecord.objects.get()
    assert record.recipient == partner
    assert list(record.customers.values_list("pk", flat=True)) == [consented.pk]
    assert record.data_items == ["crm.Customer.email", "crm.Customer.id"]
    assert record.basis == rules.BASIS_CONSENT
    assert record.purpose.code == "marketing_email"
    assert export.destination == TO_RECIPIENT and export.recipient_ref == str(partner.pk)
    # and the rows are those of the internal download: the same columns, in clear
    _internal, internal_rows = insights_services.segment_export_personal(
        user=provider, segment=tokyo, purpose_code="marketing_email"
    )
    produced = list(rows)
    assert produced == list(internal_rows)
    assert produced == [["id", "email"], [str(consented.pk), "taro@example.com"]]


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["ja", "en"])
def test_a_user_who_sees_masked_values_may_not_export_to_a_recipient(
    tokyo, team, provider, partner, language
):
    # given a member who may write provision records and see the recipients, but sees personal data masked
    user = UserFactory(username="masked", roles=[ROLE_STAFF])
    crm_services.team_member_add(team=team, user=user, role=TeamMembership.Role.MEMBER)
    masked = _with_permissions(user, PROVIDER_PERMISSIONS[:2])
    _consent(CustomerFactory(team=team, prefecture="13", email="hanako@example.com"))
    # when they export the segment to a recipient, then it is refused in their language and nothing is
    # written: a provision record would say the e-mail addresses were provided while the file held masks
    with translation.override(language), pytest.raises(ValidationError) as refused:
        _export(masked, tokyo, partner)
    expected = "マスクなしで閲覧" if language == "ja" else "view personal data"
    assert expected in " ".join(refused.value.messages)
    assert not SegmentExport.objects.exists() and not ProvisionRecord.objects.exists()
    assert _export_audits() == 0
    # and the export form offers them the internal download only
    form = SegmentExportForm(user=masked)
    assert [value for value, _label in form.fields["recipient"].choices] == [""]
    assert [v for v, _label in SegmentExportForm(user=provider).fields["recipient"].choices] == [
        "",
        str(partner.pk),
    ]
    # while the internal download stays open to them, masked
    _internal, rows = insights_services.segment_export_personal(
        user=masked, segment=tokyo, purpose_code="marketing_email"
    )
    assert list(rows)[1][1] not in ("", "hanako@example.com")


@pytest.mark.django_db
def test_the_basis_follows_the_recipient_kind_or_the_users_choice(tokyo, team, provider, domestic_processor):
    customer = CustomerFactory(team=team, prefecture="13")
    _consent(customer)
    # a processor with a contract in force receives the data entrusted to it (27(5)(i))
    _export(provider, tokyo, domestic_processor)
    assert ProvisionRecord.objects.get().basis == rules.BASIS_ENTRUSTMENT
    # a contract-based purpose to a third party by opt-out, notified to the PPC on a worked date (27(2))
    partner = Recipient.objects.create(name="提携先", kind=Recipient.Kind.THIRD_PARTY, country="JP")
    _export(
        provider,
        tokyo,
        partner,
        purpose="customer_management",
        provision_basis=rules.BASIS_OPT_OUT,
        opt_out_notified_on=dt.date(2026, 1, 5),
    )
    record = ProvisionRecord.objects.get(recipient=partner)
    assert (record.basis, record.opt_out_notified_on) == (rules.BASIS_OPT_OUT, dt.date(2026, 1, 5))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("foreign_without_basis", "法第28条"),
        ("no_consent", "同意がありません"),
        ("opt_out_without_notification", "法第27条2項"),
        ("not_providable", "提供先を選んでください"),
    ],
)
def test_a_refused_provision_writes_nothing_and_returns_no_rows(
    tokyo, team, provider, teammate, partner, us_processor, case, message
):
    # given a customer usable for the contract-based purpose and for e-mail (consented)
    customer = CustomerFactory(team=team, prefecture="13")
    _consent(customer)
    user, recipient, purpose, kwargs = provider, partner, "marketing_email", {}
    if case == "foreign_without_basis":
        recipient = us_processor  # a US processor, no cross-border basis on file (APPI 28)
    elif case == "no_consent":
        purpose = "customer_management"  # usable under the contract, but no consent to provide (27(1))
    elif case == "opt_out_without_notification":
        kwargs = {"provision_basis": rules.BASIS_OPT_OUT}
    else:
        user = (
            Customer.objects.none()
            .model._meta.apps.get_model("auth", "User")
            .objects.create(username="no-provision", is_staff=True)
        )
        user.user_permissions.add(
            *Permission.objects.filter(
                codename__in=["export_segment", "view_segment", "view_customer", "view_customer_pii"]
            )
        )
    # when the segment is exported to the recipient, then it is refused with the reason
    with pytest.raises(ProvisionRefused) as refused:
        _export(user, tokyo, recipient, purpose=purpose, **kwargs)
    assert message in " ".join(refused.value.messages)
    # and nothing was written: no export record, no provision record, no access-log entry
    assert not SegmentExport.objects.exists()
    assert not ProvisionRecord.objects.exists()
    assert _export_audits() == 0


@pytest.mark.django_db
def test_without_a_registered_recorder_nothing_goes_to_a_recipient(
    tokyo, team, provider, partner, monkeypatch
):
    monkeypatch.setattr(hooks, "_provision_recorder", [])
    _consent(CustomerFactory(team=team, prefecture="13"))
    with pytest.raises(PermissionDenied):
        _export(provider, tokyo, partner)
    assert not SegmentExport.objects.exists()


@pytest.mark.django_db
def test_the_export_form_offers_only_the_recipients_the_user_may_provide_to(
    client, tokyo, team, teammate, provider, partner
):
    url = reverse("admin:crm_segment_export", args=[tokyo.pk])
    # given a teammate without the provision permission, then the form offers the internal download only
    assert hooks.recipients(teammate) == []
    # and a provider sees the recipient with its kind and country
    assert hooks.recipients(provider) == [(str(partner.pk), f"{partner.name}（第三者（法第27条1項）・JP）")]
    client.force_login(provider)
    page = client.get(url).content.decode()
    assert f'value="{partner.pk}"' in page
    # a hostile POST of a recipient not offered is a form error, not an export
    client.force_login(teammate)
    answer = client.post(
        url, {"kind": "personal", "purpose_code": "marketing_email", "recipient": str(partner.pk), "k": "5"}
    )
    assert answer.status_code == 200 and not SegmentExport.objects.exists()


@pytest.mark.django_db
def test_the_admin_downloads_after_the_record_and_shows_a_refusal_in_both_languages(
    client, tokyo, team, provider, partner, us_processor
):
    customer = CustomerFactory(team=team, prefecture="13")
    _consent(customer)
    url = reverse("admin:crm_segment_export", args=[tokyo.pk])
    client.force_login(provider)
    form = {"kind": "personal", "purpose_code": "marketing_email", "k": "5"}
    # when the provider exports to the domestic third party, then the CSV downloads and the record exists
    answer = client.post(url, {**form, "recipient": str(partner.pk)})
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/csv")
    assert ProvisionRecord.objects.filter(recipient=partner).exists()
    body = b"".join(answer.streaming_content).decode("utf-8-sig")
    assert body.splitlines()[0] == "id,email" and str(customer.pk) in body
    # when the export goes to the US processor without a cross-border basis, then the form says why, in
    # Japanese and in English, and nothing leaves (no second export, no second record)
    for language, lead in (
        ("ja", "第三者提供の記録（法第29条）を作成できないため、出力しませんでした: 外国にある第三者（US）"),
        ("en", "could not be written, so nothing was exported: No basis is on file for providing to a third"),
    ):
        with translation.override(language):
            refused = client.post(
                url, {**form, "recipient": str(us_processor.pk)}, HTTP_ACCEPT_LANGUAGE=language
            )
        assert refused.status_code == 200 and refused["Content-Type"].startswith("text/html")
        assert lead in refused.content.decode()
    assert SegmentExport.objects.count() == 1 and ProvisionRecord.objects.count() == 1
    # opt-out without the PPC notification date is asked on the form, not refused later
    missing = client.post(url, {**form, "recipient": str(partner.pk), "provision_basis": "opt_out"})
    assert missing.status_code == 200 and 'id="id_opt_out_notified_on"' in missing.content.decode()
    assert SegmentExport.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("ref", ["", "abc", "²", "-1", "99999999999999999999"])
def test_a_recipient_reference_that_names_no_recipient_is_refused(tokyo, team, provider, ref):
    _consent(CustomerFactory(team=team, prefecture="13"))
    with pytest.raises(ProvisionRefused):
        insights_services.segment_export_personal(
            user=provider,
            segment=tokyo,
            purpose_code="marketing_email",
            destination=TO_RECIPIENT,
            recipient_ref=ref,
        )
    assert not SegmentExport.objects.exists() and not ProvisionRecord.objects.exists()
