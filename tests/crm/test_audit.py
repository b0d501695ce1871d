"""The audit trail: who did what (actor, address), no personal values in it, access entries, a read-only
admin, and a hash chain that names the first edited, deleted or smuggled-in entry."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from io import StringIO

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from crm import services
from crm.audit.actors import audit_actor
from crm.audit.maintenance import audit_maintenance
from crm.audit.sealing import _seal_after_commit, audit_seal_pending
from crm.audit.verification import ANCHOR, EDITED, HEAD, MISSING, audit_chain_verify
from crm.classification import REDACTED
from crm.models import AuditChainHead, AuditEntry, Customer, Team, TeamMembership
from tests.crm.adminforms import admin_form_data
from tests.factories import UserFactory

Action = AuditEntry.Action

# The clear values of the standing `customer` fixture, in every spelling that could leak.
CUSTOMER_CLEAR_VALUES = [
    "山田",
    "太郎",
    "ヤマダ",
    "タロウ",
    "Taro.Yamada",
    "taro.yamada@example.com",
    "+819012345678",
    "090-1234-5678",
    "1234-5678",
    "M000000001",
    "千代田区丸の内",
    "100-0005",
]


def _row_text(entry: AuditEntry) -> str:
    """Every stored column of the entry, as one string (changes, changes_text, object_repr, serialized …)."""
    row = AuditEntry.objects.filter(pk=entry.pk).values().get()
    return json.dumps(row, ensure_ascii=False, default=str)


def _assert_no_clear_values(entry: AuditEntry, values: list[str]) -> None:
    text = _row_text(entry)
    leaked = [v for v in values if v in text]
    assert not leaked, f"audit entry {entry.pk} holds personal values in clear: {leaked}"


def _entries_for(obj: object) -> list[AuditEntry]:
    # Entries are chained after their writer commits; a test's transaction never commits, so seal here.
    audit_seal_pending()
    ct = ContentType.objects.get_for_model(type(obj))
    return list(AuditEntry.objects.filter(content_type=ct, object_pk=str(obj.pk)).order_by("chain_seq"))


def _new_customer(team: Team, actor: object, **fields: object) -> Customer:
    values = {
        "family_name": "山田",
        "given_name": "太郎",
        "family_name_kana": "ヤマダ",
        "given_name_kana": "タロウ",
        "email": "Taro.Yamada@Example.com",
        "phone": "090-1234-5678",
        "member_no": "M000000001",
        "postal_code": "100-0005",
        "address": "千代田区丸の内1-1-1",
        "collection_channel": Customer.Channel.WEB_FORM,
    }
    values.update(fields)
    return services.customer_create(team=team, actor=actor, **values)


# --- entries and actors ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_customer_create_update_delete_through_services_name_the_actor(team, owner):
    # given the owner creating and changing a customer through the services, then deleting it
    customer = _new_customer(team, owner)
    services.customer_update(customer=customer, actor=owner, email="hanako@example.net", notes="転居の連絡")
    pk = customer.pk
    with audit_actor(owner):
        customer.delete()
    customer.pk = pk

    # when the trail for that customer is read
    entries = _entries_for(customer)

    # then create, update and delete are recorded, each with the owner as actor
    assert [e.action for e in entries] == [Action.CREATE, Action.UPDATE, Action.DELETE]
    assert {e.actor_id for e in entries} == {owner.pk}
    assert entries[0].object_repr == f"顧客 #{pk}"
    # the changed personal fields are named, their values fully redacted; blind indexes are not logged
    assert entries[1].changes["email"] == [REDACTED, REDACTED]
    assert entries[1].changes["notes"] == [REDACTED, REDACTED]
    assert not any(name.endswith("_bidx") for e in entries for name in e.changes)
    # and no clear value reaches any column of any entry (DELETE entries hold every old value)
    for entry in entries:
        _assert_no_clear_values(entry, [*CUSTOMER_CLEAR_VALUES, "hanako@example.net", "転居の連絡"])


@pytest.mark.django_db
def test_customer_change_through_the_admin_names_the_user_and_address(client, superuser, customer):
    # given a superuser (who may see and change personal data) logged in to the admin
    client.force_login(superuser)
    data = admin_form_data(superuser, customer, email="hanako.yamada@example.com", given_name="花子")

    # when they change the customer's e-mail and given name
    response = client.post(reverse("admin:crm_customer_change", args=[customer.pk]), data)

    # then the change is saved and audited with the user and the request's address, values redacted
    assert response.status_code == 302
    entry = [e for e in _entries_for(customer) if e.action == Action.UPDATE][-1]
    assert entry.actor == superuser
    assert entry.remote_addr == "127.0.0.1"
    assert entry.changes["email"] == [REDACTED, REDACTED]
    assert entry.changes["given_name"] == [REDACTED, REDACTED]
    _assert_no_clear_values(entry, [*CUSTOMER_CLEAR_VALUES, "hanako.yamada", "花子"])


@pytest.mark.django_db
def test_masked_staff_change_through_the_admin_is_audited(client, teammate, customer):
    # given a teammate (change right, no 'view personal data') on the admin
    client.force_login(teammate)
    data = admin_form_data(teammate, customer, collection_channel="store_pos")

    # when they change how the customer's data was acquired
    response = client.post(reverse("admin:crm_customer_change", args=[customer.pk]), data)

    # then the entry names them and the change is readable (not personal)
    assert response.status_code == 302
    entry = _entries_for(customer)[-1]
    assert (entry.action, entry.actor, entry.remote_addr) == (Action.UPDATE, teammate, "127.0.0.1")
    # nothing else rewritten by the form
    assert entry.changes == {"collection_channel": ["web_form", "store_pos"]}


@pytest.mark.django_db
def test_team_and_membership_changes_through_the_admin_name_the_user(client, privacy_officer):
    # given the privacy officer (manages teams and memberships) on the admin
    client.force_login(privacy_officer)
    staff_member = UserFactory(username="newcomer")
    inline = {
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }

    # when they create a team, rename it, add a member and remove the member again
    created = client.post(reverse("admin:crm_team_add"), {"code": "nagoya", "name": "名古屋営業部", **inline})
    team = Team.objects.get(code="nagoya")
    renamed = client.post(
        reverse("admin:crm_team_change", args=[team.pk]), {"code": "nagoya", "name": "名古屋支店", **inline}
    )
    added = client.post(
        reverse("admin:crm_teammembership_add"),
        {"team": team.pk, "user": staff_member.pk, "role": TeamMembership.Role.MEMBER},
    )
    membership = TeamMembership.objects.get(team=team, user=staff_member)
    removed = client.post(reverse("admin:crm_teammembership_delete", args=[membership.pk]), {"post": "yes"})

    # then every step is audited with the officer and the address
    assert [r.status_code for r in (created, renamed, added, removed)] == [302, 302, 302, 302]
    team_entries = _entries_for(team)
    membership_entries = _entries_for(membership)
    assert [e.action for e in team_entries] == [Action.CREATE, Action.UPDATE]
    assert team_entries[1].changes == {"name": ["名古屋営業部", "名古屋支店"]}
    assert [e.action for e in membership_entries] == [Action.CREATE, Action.DELETE]
    for entry in team_entries + membership_entries:
        assert (entry.actor, entry.remote_addr) == (privacy_officer, "127.0.0.1")


@pytest.mark.django_db
def test_team_deletion_is_refused_in_the_admin_and_audited_through_code(client, privacy_officer, superuser):
    # given an empty team
    team = Team.objects.create(code="closing", name="閉鎖予定")
    client.force_login(superuser)

    # when even a superuser opens its delete page, then it is refused
    assert client.get(reverse("admin:crm_team_delete", args=[team.pk])).status_code == 403

    # when code acting for the privacy officer deletes it
    pk = team.pk
    with audit_actor(privacy_officer):
        team.delete()
    team.pk = pk

    # then the deletion is audited with that actor
    assert [(e.action, e.actor) for e in _entries_for(team)][-1] == (Action.DELETE, privacy_officer)


@pytest.mark.django_db
def test_membership_through_services_names_the_actor(team, privacy_officer):
    # given a staff member added to and removed from a team by a service acting for the officer
    user = UserFactory(username="temp")
    membership = services.team_member_add(team=team, user=user, actor=privacy_officer)
    services.team_member_add(team=team, user=user, role=TeamMembership.Role.LEAD, actor=privacy_officer)
    pk = membership.pk
    services.team_member_remove(membership=membership, actor=privacy_officer)
    membership.pk = pk

    # when the membership's trail is read
    entries = _entries_for(membership)

    # then create, role change and removal carry the officer
    assert [e.action for e in entries] == [Action.CREATE, Action.UPDATE, Action.DELETE]
    assert entries[1].changes == {"role": ["member", "lead"]}
    assert {e.actor_id for e in entries} == {privacy_officer.pk}


@pytest.mark.django_db
def test_service_actor_is_not_lost_after_an_earlier_request_or_actor(client, team, owner, teammate):
    # given a finished admin request by the owner and a finished service call for the owner: auditlog
    # leaves both contexts behind in the thread
    client.force_login(owner)
    assert client.get(reverse("admin:index")).status_code == 200
    _new_customer(team, owner, member_no="M0001", email="a@example.com", phone="090-1111-0001")

    # when a service then acts for the teammate, outside any request
    customer = _new_customer(team, teammate, member_no="M0002", email="b@example.com", phone="090-1111-0002")

    # then its entry names the teammate, with no address carried over from the old request
    entry = _entries_for(customer)[0]
    assert (entry.actor, entry.remote_addr) == (teammate, None)


# --- access entries --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_opening_a_customer_writes_an_access_entry(client, owner, customer):
    # given the owner logged in
    client.force_login(owner)
    before = timezone.now()

    # when they open the customer's change page
    response = client.get(reverse("admin:crm_customer_change", args=[customer.pk]))

    # then an ACCESS entry says who looked at which customer, when and from where
    assert response.status_code == 200
    access = [e for e in _entries_for(customer) if e.action == Action.ACCESS]
    assert len(access) == 1
    assert access[0].actor == owner
    assert access[0].remote_addr == "127.0.0.1"
    assert before <= access[0].timestamp <= timezone.now()
    assert access[0].object_repr == f"顧客 #{customer.pk}"
    _assert_no_clear_values(access[0], CUSTOMER_CLEAR_VALUES)


@pytest.mark.django_db
def test_a_refused_customer_page_writes_no_access_entry(client, outsider, customer):
    # given an outsider logged in
    client.force_login(outsider)

    # when they try to open the customer
    response = client.get(reverse("admin:crm_customer_change", args=[customer.pk]))

    # then they are sent away and nothing was accessed
    assert response.status_code == 302
    assert not [e for e in _entries_for(customer) if e.action == Action.ACCESS]


def _list_entries() -> list[AuditEntry]:
    audit_seal_pending()
    return list(AuditEntry.objects.filter(object_pk="changelist").order_by("chain_seq"))


@pytest.mark.django_db
def test_a_search_in_the_customer_list_writes_an_access_entry_without_the_term(
    client, support_agent, customer, foreign_customer
):
    # given the request desk (sees every team, in clear) logged in
    client.force_login(support_agent)

    # when they search the list by the customer's e-mail address, filtered by status
    response = client.get(
        reverse("admin:crm_customer_changelist"), {"q": "Taro.Yamada@example.com", "status__exact": "active"}
    )

    # then one ACCESS entry names who saw which customer, in clear, after a search, with the filter …
    assert response.status_code == 200
    assert customer.email in response.content.decode()
    [entry] = _list_entries()
    assert (entry.action, entry.actor, entry.remote_addr) == (Action.ACCESS, support_agent, "127.0.0.1")
    assert entry.additional_data["list"] == {
        "ids": [customer.pk],
        "clear": True,
        "searched": True,
        "filters": {"status__exact": "active"},
        "page": 1,
    }
    # … and neither the search term nor any value shown is in it
    _assert_no_clear_values(entry, CUSTOMER_CLEAR_VALUES)


@pytest.mark.django_db
def test_a_masked_list_page_is_logged_as_masked_with_only_the_rows_shown(
    client, teammate, customer, foreign_customer
):
    # given a teammate (their team's customers only, masked)
    client.force_login(teammate)
    # when they open the list
    assert client.get(reverse("admin:crm_customer_changelist")).status_code == 200
    # then the entry lists only the customer they were shown, as masked, without a search
    [entry] = _list_entries()
    assert entry.additional_data["list"]["ids"] == [customer.pk]
    assert (entry.additional_data["list"]["clear"], entry.additional_data["list"]["searched"]) == (
        False,
        False,
    )


@pytest.mark.django_db
def test_a_refused_list_writes_no_access_entry(client, security_user, customer):
    # given a security user (logs only, no customer permission)
    client.force_login(security_user)
    # when they try the customer list, then they are refused and nothing was shown or logged
    assert client.get(reverse("admin:crm_customer_changelist")).status_code == 403
    assert not _list_entries()


# --- the audit admin ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_audit_admin_is_read_only_even_for_a_superuser(client, superuser, customer):
    # given a superuser and an audit entry
    client.force_login(superuser)
    entry = _entries_for(customer)[0]
    change_url = reverse("admin:crm_auditentry_change", args=[entry.pk])

    # when they open it, then they can read it but there is no save button
    page = client.get(change_url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert 'name="_continue"' not in page.content.decode()

    # when they post a change, add one or delete one, then each is refused
    assert client.post(change_url, {"object_repr": "forged", "action": 2}).status_code == 403
    assert client.get(reverse("admin:crm_auditentry_add")).status_code == 403
    assert client.post(reverse("admin:crm_auditentry_add"), {"object_repr": "x"}).status_code == 403
    assert client.get(reverse("admin:crm_auditentry_delete", args=[entry.pk])).status_code == 403
    assert (
        client.post(reverse("admin:crm_auditentry_delete", args=[entry.pk]), {"post": "yes"}).status_code
        == 403
    )

    # and the trail is untouched
    assert AuditEntry.objects.get(pk=entry.pk).object_repr == entry.object_repr
    assert audit_chain_verify().ok


@pytest.mark.django_db
@pytest.mark.parametrize("role_user", ["auditor", "security_user", "privacy_officer"])
def test_audit_admin_is_visible_to_the_log_roles(client, request, role_user, customer):
    # given a user of a role that reads the logs
    user = request.getfixturevalue(role_user)
    client.force_login(user)
    entry = _entries_for(customer)[0]

    # when they open the list and an entry
    listing = client.get(reverse("admin:crm_auditentry_changelist"))
    detail = client.get(reverse("admin:crm_auditentry_change", args=[entry.pk]))

    # then both are shown, read-only
    assert listing.status_code == 200
    assert reverse("admin:crm_auditentry_change", args=[entry.pk]) in listing.content.decode()
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("role_user", ["owner", "support_agent"])
def test_audit_admin_is_refused_to_other_roles(client, request, role_user, customer):
    # given staff and the support desk, who work on customers but do not read the logs
    user = request.getfixturevalue(role_user)
    client.force_login(user)
    entry = _entries_for(customer)[0]

    # when they open the list or an entry, then both are refused
    assert client.get(reverse("admin:crm_auditentry_changelist")).status_code == 403
    assert client.get(reverse("admin:crm_auditentry_change", args=[entry.pk])).status_code == 403


# --- the database guard ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_database_refuses_update_and_delete_of_entries(customer):
    # given an audit entry
    entry = _entries_for(customer)[0]

    # when raw SQL tries to change or delete it outside maintenance, then the database refuses
    for sql in (
        "UPDATE crm_auditentry SET object_repr = 'x' WHERE id = %s",
        "DELETE FROM crm_auditentry WHERE id = %s",
    ):
        with (
            pytest.raises(IntegrityError, match="追記専用"),
            transaction.atomic(),
            connection.cursor() as cur,
        ):
            cur.execute(sql, [entry.pk])
    # and the ORM's bulk paths as well
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(object_repr="x")
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditChainHead.objects.all().delete()
    assert AuditEntry.objects.get(pk=entry.pk).object_repr == entry.object_repr


@pytest.mark.django_db
def test_maintenance_lifts_the_guard_for_its_block_only(customer):
    # given an audit entry
    entry = _entries_for(customer)[0]
    # when a maintenance block changes it, then the database lets it through
    with audit_maintenance():
        AuditEntry.objects.filter(pk=entry.pk).update(cid="maintenance")
    # and right after the block the guard is back, in the same transaction
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(cid="after")
    assert AuditEntry.objects.get(pk=entry.pk).cid == "maintenance"


@pytest.mark.django_db
def test_a_user_who_acted_cannot_be_deleted(team, privacy_officer):
    # given a user named as actor of an entry (users who acted are deactivated, not deleted)
    _new_customer(team, privacy_officer)

    # when the user is deleted, then the database refuses to blank the actor of the entry
    with pytest.raises(IntegrityError), transaction.atomic():
        privacy_officer.delete()


# --- chain verification ------------------------------------------------------------------------------


def _tamper(sql: str, params: list[object]) -> None:
    """What someone with database rights could do: lift the guard and change the table directly."""
    with audit_maintenance(), connection.cursor() as cur:
        cur.execute(sql, params)


def _insert_forged(about: AuditEntry, **columns: str) -> int:
    """A row inserted with raw SQL, bypassing the model (and so the chain), about the object of `about`, with
    the extra `columns` given; its id."""
    names, marks = "".join(f", {name}" for name in columns), ", %s" * len(columns)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO crm_auditentry (content_type_id, object_pk, object_repr, action, changes_text,"
            f" timestamp, chain_hash{names}) VALUES (%s, %s, 'forged', 1, '', now(), ''{marks})"
            " RETURNING id",
            [about.content_type_id, about.object_pk, *columns.values()],
        )
        return cur.fetchone()[0]


def _verify(*args: str) -> str:
    out = StringIO()
    call_command("audit_verify", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def trail(customer, other_team, owner, teammate, outsider):
    """A trail of a dozen entries (teams, memberships, customers) plus a few updates."""
    _new_customer(other_team, outsider, member_no="M0100", email="o@example.com", phone="090-1111-0100")
    for gender in ("female", ""):
        services.customer_update(customer=customer, actor=owner, gender=gender)
    audit_seal_pending()
    return list(AuditEntry.objects.order_by("chain_seq"))


@pytest.mark.django_db
def test_a_clean_chain_verifies(trail):
    # given an untouched trail
    # when it is verified
    output = _verify()
    # then every entry is counted and the head printed
    last = trail[-1]
    assert output.strip() == f"OK: {len(trail)} entries verified; head {last.chain_seq}:{last.chain_hash}"
    assert [e.chain_seq for e in trail] == list(range(1, len(trail) + 1))


@pytest.mark.django_db
def test_an_edited_entry_is_named(trail):
    # given someone rewriting the changes of one entry in the middle of the trail
    victim = trail[len(trail) // 2]
    _tamper('UPDATE crm_auditentry SET changes = \'{"status": ["x", "y"]}\' WHERE id = %s', [victim.pk])

    # when the trail is verified, then that entry is named as edited
    with pytest.raises(
        CommandError, match=rf"BROKEN edited: seq={victim.chain_seq} entry={victim.pk}\b"
    ) as exc:
        _verify()
    assert exc.value.returncode == 1
    assert "改ざんの疑い: 記録後に変更された行" in str(exc.value)


@pytest.mark.django_db
@pytest.mark.parametrize("column", ["object_repr", "actor_id", "timestamp", "chain_hash", "serialized_data"])
def test_any_edited_column_is_caught(trail, column, outsider):
    # given one column of the last-but-one entry changed in place
    victim = trail[-2]
    values = {
        "object_repr": "顧客 #999",
        "actor_id": outsider.pk,
        "timestamp": dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        "chain_hash": "f" * 64,
        "serialized_data": json.dumps({"fields": {"email": "x"}}),
    }
    _tamper(f"UPDATE crm_auditentry SET {column} = %s WHERE id = %s", [values[column], victim.pk])

    # when the chain is verified in small batches, then that entry is reported
    report = audit_chain_verify(batch_size=3)
    assert (report.problem.kind, report.problem.entry_id) == (EDITED, victim.pk)
    assert report.checked == len(trail) - 2


@pytest.mark.django_db
def test_a_deleted_entry_is_named_by_its_gap(trail):
    # given one entry deleted from the middle of the trail
    victim = trail[3]
    _tamper("DELETE FROM crm_auditentry WHERE id = %s", [victim.pk])

    # when the trail is verified, then the missing sequence number is named
    with pytest.raises(
        CommandError, match=rf"BROKEN missing: seq={victim.chain_seq} .*seq {victim.chain_seq} "
    ):
        _verify("--batch-size", "2")


@pytest.mark.django_db
def test_a_gap_wider_than_a_batch_is_named(trail):
    # given four consecutive entries deleted, more than one verification batch
    _tamper("DELETE FROM crm_auditentry WHERE chain_seq BETWEEN 2 AND 5", [])

    # when the trail is verified in batches of two
    report = audit_chain_verify(batch_size=2)

    # then the whole gap is named, before the entry that follows it
    assert (report.problem.kind, report.problem.seq, report.checked) == (MISSING, 2, 1)
    assert report.problem.detail == f"seq 2-5 missing before entry {trail[5].pk}"


@pytest.mark.django_db
def test_deleting_the_newest_entries_is_caught_by_the_head(trail, team, owner):
    # given the two newest entries deleted
    _tamper("DELETE FROM crm_auditentry WHERE chain_seq >= %s", [trail[-2].chain_seq])

    # when the trail is verified, then the missing tail is reported
    report = audit_chain_verify()
    assert (report.problem.kind, report.problem.seq) == (MISSING, trail[-2].chain_seq)

    # and it stays visible after new entries: numbering continues from the head, leaving the gap
    _new_customer(team, owner, member_no="M0009", email="n@example.com", phone="090-1111-0009")
    later = audit_chain_verify()
    assert (later.problem.kind, later.problem.seq) == (MISSING, trail[-2].chain_seq)


@pytest.mark.django_db
def test_a_row_inserted_around_the_model_is_unchained(trail):
    # given a row inserted with raw SQL, bypassing the chain
    forged_id = _insert_forged(trail[0])

    # when the trail is verified, then the row is named
    with pytest.raises(CommandError, match=rf"BROKEN unchained: seq=- entry={forged_id}\b"):
        _verify()


@pytest.mark.django_db
def test_a_forged_head_is_caught(trail):
    # given the newest entry deleted and the head pointed back at the one before, without the key
    _tamper("DELETE FROM crm_auditentry WHERE id = %s", [trail[-1].pk])
    _tamper("UPDATE crm_auditchainhead SET seq = %s, hash = %s", [trail[-2].chain_seq, trail[-2].chain_hash])

    # when the trail is verified, then the head's signature gives it away
    report = audit_chain_verify()
    assert report.problem.kind == HEAD
    assert "signature" in report.problem.detail


@pytest.mark.django_db
def test_a_deleted_head_is_caught(trail):
    # given the head row removed
    _tamper("DELETE FROM crm_auditchainhead", [])
    # when the trail is verified, then the missing head is reported
    assert audit_chain_verify().problem.kind == HEAD


@pytest.mark.django_db
def test_a_replayed_head_needs_the_head_recorded_outside(trail, team, owner):
    # given the head recorded outside the database after the newest entry
    recorded = f"{trail[-1].chain_seq}:{trail[-1].chain_hash}"
    assert _verify("--expect-head", recorded).startswith("OK")
    old_head = AuditChainHead.objects.values("seq", "hash", "mac").get()

    # when someone keeps the old head row, lets an entry be written, deletes it and restores the row
    _new_customer(team, owner, member_no="M0008", email="r@example.com", phone="090-1111-0008")
    audit_seal_pending()
    newest = AuditEntry.objects.order_by("-chain_seq").first()
    newest_recorded = f"{newest.chain_seq}:{newest.chain_hash}"
    _tamper("DELETE FROM crm_auditentry WHERE id = %s", [newest.pk])
    _tamper("UPDATE crm_auditchainhead SET seq = %(seq)s, hash = %(hash)s, mac = %(mac)s", old_head)

    # then the database alone cannot tell (anchoring is off here: tests/crm/test_audit_sealer.py has it on) …
    assert _verify().startswith("OK")
    # … but the head recorded after that entry does
    report = audit_chain_verify(expect_head=(newest.chain_seq, newest.chain_hash))
    assert report.problem.kind == ANCHOR
    with pytest.raises(CommandError, match="BROKEN anchor"):
        _verify("--expect-head", newest_recorded)


@pytest.mark.django_db
def test_expect_head_is_validated():
    # given a malformed recorded head, when the command runs, then it explains the format in Japanese
    with pytest.raises(CommandError, match="連番:ハッシュ"):
        _verify("--expect-head", "12:nothex")


@pytest.mark.django_db
def test_entries_verify_whatever_zone_address_and_numbers_they_were_written_with(team):
    # given entries written with a Tokyo timestamp, an IPv6 address in upper case, a naive timestamp and
    # JSON numbers that PostgreSQL prints differently (1e16 → 10000000000000000)
    ct = ContentType.objects.get_for_model(Team)
    common = {"content_type": ct, "object_pk": str(team.pk), "object_repr": str(team), "action": 1}
    AuditEntry.objects.create(
        **common,
        timestamp=dt.datetime(2026, 4, 1, 10, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Tokyo")),
        remote_addr="2001:DB8:0:0::1",
        changes={"n": [1e16, 1.5e20], "x": [0.1, 1e-7]},
        additional_data={"batch": 3, "ratio": 2.5e-3},
    )
    AuditEntry.objects.create(**common, remote_addr="::ffff:192.0.2.1", remote_port=443)
    AuditEntry.objects.create(**common, timestamp=dt.datetime(2026, 4, 1, 10, 0))  # naive: taken as JST
    bad_addr = AuditEntry.objects.create(**common, remote_addr="not-an-address")

    # when the chain is verified
    report = audit_chain_verify()

    # then everything verifies, and an unusable forwarded address was dropped instead of failing the write
    assert report.ok, report.problem
    assert AuditEntry.objects.get(pk=bad_addr.pk).remote_addr is None


@pytest.mark.django_db
def test_an_empty_trail_verifies():
    # given no entries at all, when verified, then it is OK with zero entries
    assert _verify().startswith("OK: 0 entries verified")


@pytest.mark.django_db
def test_entries_are_chained_as_soon_as_their_writer_commits(team, owner):
    # given writes in one transaction (the test's): entries are pending, one seal waits for the commit
    customer = _new_customer(team, owner, member_no="M0900", email="c@example.com", phone="090-1111-0900")
    services.customer_update(customer=customer, actor=owner, collection_channel="store_pos")
    assert AuditEntry.objects.filter(chain_seq=None).exists()
    hooks = transaction.get_connection().run_on_commit
    seals = [cb for _sids, cb, _robust in hooks if cb is _seal_after_commit]
    assert len(seals) == 1  # one seal per transaction, however many entries it wrote

    # when the transaction commits (its on-commit callbacks run)
    seals[0]()

    # then its entries are sealed, with no explicit call, and the chain verifies
    ct = ContentType.objects.get_for_model(Customer)
    entries = AuditEntry.objects.filter(content_type=ct, object_pk=str(customer.pk))
    assert len(entries) == 2
    assert all(e.chain_seq is not None and e.chain_hash and e.entry_mac for e in entries)
    assert not AuditEntry.objects.filter(chain_seq=None).exists()
    assert audit_chain_verify().ok


@pytest.mark.django_db
def test_a_sealed_entry_cannot_be_resealed(trail):
    # given a sealed entry
    entry = trail[0]
    # when raw SQL tries to give it another place in the chain, then the database refuses
    with pytest.raises(IntegrityError, match="追記専用"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE crm_auditentry SET chain_seq = 999, chain_hash = 'x' WHERE id = %s", [entry.pk])


@pytest.mark.django_db
def test_a_pending_entry_with_a_wrong_signature_is_never_sealed(trail):
    # given a pending row whose entry_mac was not made with the key
    forged_id = _insert_forged(trail[0], entry_mac="0" * 64)
    # when the sealer runs, then it leaves the row out of the chain and the verifier names it
    assert audit_seal_pending() == 0
    assert AuditEntry.objects.get(pk=forged_id).chain_seq is None
    report = audit_chain_verify()
    assert (report.problem.kind, report.problem.entry_id) == ("unchained", forged_id)
