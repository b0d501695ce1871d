"""Security probe of the audit trail: what someone with database rights but without AUDIT_CHAIN_KEY tries.

Replays the two attacks of issue #13 end to end, through `manage.py audit_verify` as an operator runs it:
- a copy of a genuine entry made with INSERT … SELECT (its entry_mac copied along) must not pass as genuine,
  nor be chained by the verifier;
- the whole trail wiped (TRUNCATE with the maintenance setting on) must not verify "OK: 0 entries": the head
  anchored outside the database says how far the chain went;
- the maintenance setting alone must not lift the guard: it also needs the maintenance database role, which
  the application's role does not have.
"""

from __future__ import annotations

import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from crm import services
from crm.audit.sealing import audit_seal_pending
from crm.models import AuditEntry, Customer

# Every column of an entry but its identity and its place in the chain: what INSERT … SELECT copies.
_COPIED = (
    "content_type_id, object_pk, object_id, object_repr, action, changes, changes_text, actor_id,"
    " actor_email, remote_addr, remote_port, timestamp, cid, additional_data, serialized_data, chain_hash,"
    " entry_mac"
)


def _verify(*args: str) -> str:
    out = StringIO()
    call_command("audit_verify", *args, stdout=out)
    return out.getvalue()


def _write_and_seal(team, owner, n: int, first: int = 0) -> None:
    """Audited writes, committed and sealed (the seal's anchor is written when its transaction commits)."""
    for i in range(n):
        services.customer_create(
            team=team,
            actor=owner,
            family_name="山田",
            given_name="太郎",
            member_no=f"P{first + i:09d}",
            collection_channel=Customer.Channel.WEB_FORM,
        )
    audit_seal_pending()


@pytest.fixture
def anchor(settings, tmp_path):
    settings.AUDIT_ANCHOR_PATH = str(tmp_path / "audit-anchor.jsonl")
    return tmp_path / "audit-anchor.jsonl"


@pytest.mark.django_db
def test_a_copied_entry_is_not_chained_and_is_reported(
    team, owner, anchor, django_capture_on_commit_callbacks
):
    # given a sealed trail
    with django_capture_on_commit_callbacks(execute=True):
        _write_and_seal(team, owner, 2)
    original = AuditEntry.objects.order_by("chain_seq").last()

    # when someone copies a genuine entry with INSERT … SELECT (entry_mac and all)
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO crm_auditentry ({_COPIED}) SELECT {_COPIED} FROM crm_auditentry"
            " WHERE id = %s RETURNING id",
            [original.pk],
        )
        copy_id = cur.fetchone()[0]

    # then the operator's verification names the copy instead of chaining it …
    with pytest.raises(CommandError, match=rf"BROKEN unchained: seq=- entry={copy_id}\b"):
        _verify()
    assert AuditEntry.objects.get(pk=copy_id).chain_seq is None
    # … and the sealer refuses it as well
    assert audit_seal_pending() == 0
    assert AuditEntry.objects.get(pk=copy_id).chain_seq is None


@pytest.mark.django_db
def test_the_verifier_reports_pending_entries_without_sealing_them(team, owner, anchor):
    # given a genuine entry written but not sealed yet (its writer's transaction has not committed)
    services.customer_create(
        team=team, actor=owner, family_name="山田", given_name="太郎", collection_channel="web_form"
    )
    pending = AuditEntry.objects.filter(chain_seq=None).count()
    assert pending

    # when the trail is verified
    out = _verify()

    # then it says so, and leaves them to the sealer
    assert out.startswith("OK")
    assert f"{pending} entries not sealed yet" in out
    assert AuditEntry.objects.filter(chain_seq=None).count() == pending


@pytest.mark.django_db
def test_a_wiped_trail_fails_against_the_anchored_head(
    team, owner, anchor, django_capture_on_commit_callbacks
):
    # given a sealed trail whose head was anchored outside the database
    with django_capture_on_commit_callbacks(execute=True):
        _write_and_seal(team, owner, 2)
    head = AuditEntry.objects.order_by("chain_seq").last()
    assert _verify().startswith("OK")

    # when the trail is wiped by someone who may lift the guard (the session setting and the role)
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's transaction has deferred checks pending
        cur.execute("SET LOCAL crm.allow_truncate = on")
        cur.execute("TRUNCATE crm_auditentry, crm_auditchainhead")

    # then the verification fails, naming the head it can no longer reach
    with pytest.raises(CommandError, match=rf"BROKEN anchor: seq={head.chain_seq}\b"):
        _verify()


def _app_role(cur) -> str:
    """A role like the application's (not superuser, not owner, not in the maintenance role), with the
    rights the application needs on the audit tables; dropped with the test's transaction."""
    role = f"crm_probe_{uuid.uuid4().hex[:12]}"
    cur.execute(f"CREATE ROLE {role} NOLOGIN")
    cur.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON crm_auditentry, crm_auditchainhead TO {role}"
    )
    return role


@pytest.mark.django_db
def test_the_maintenance_setting_alone_does_not_lift_the_guard(customer):
    # given the application's role, with the maintenance settings on
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's transaction has deferred checks pending
        role = _app_role(cur)
        # when it tries to wipe or edit the trail, then the database refuses
        for sql in ("TRUNCATE crm_auditentry, crm_auditchainhead", "UPDATE crm_auditentry SET cid = 'x'"):
            with pytest.raises(DatabaseError, match="追記専用"), transaction.atomic():
                cur.execute(f"SET LOCAL ROLE {role}")
                cur.execute("SET LOCAL crm.allow_truncate = on")
                cur.execute("SET LOCAL crm.audit_maintenance = on")
                cur.execute(sql)
        assert AuditEntry.objects.exists()

        # when the role is granted the maintenance role, then the same statement goes through
        cur.execute(f"GRANT crm_maintenance TO {role}")
        with transaction.atomic():
            cur.execute(f"SET LOCAL ROLE {role}")
            cur.execute("SET LOCAL crm.allow_truncate = on")
            cur.execute("TRUNCATE crm_auditentry, crm_auditchainhead")
            cur.execute("RESET ROLE")
        assert not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_a_wiped_trail_written_anew_past_the_old_head_still_fails(
    team, owner, anchor, django_capture_on_commit_callbacks
):
    # given a sealed trail of a few entries, anchored
    with django_capture_on_commit_callbacks(execute=True):
        _write_and_seal(team, owner, 1)
    old_head = AuditEntry.objects.order_by("chain_seq").last().chain_seq

    # when it is wiped, and more entries than before are written and sealed afterwards
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute("SET LOCAL crm.allow_truncate = on")
        cur.execute("TRUNCATE crm_auditentry, crm_auditchainhead")
    with django_capture_on_commit_callbacks(execute=True):
        _write_and_seal(team, owner, 6, first=10)
    assert AuditEntry.objects.order_by("chain_seq").last().chain_seq > old_head

    # then the sealer did not anchor the new chain over the old one, and the verification still fails
    with pytest.raises(CommandError, match=rf"BROKEN anchor: seq={old_head}\b"):
        _verify()
