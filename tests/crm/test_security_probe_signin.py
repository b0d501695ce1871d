"""Security probe of the admin sign-in (issue #13): the wrong-password series an attacker would replay.

Each test drives the real login page (Django admin's form, every middleware) with the test client, as a
password-guessing script would, and checks what the attacker gets and what the audit trail keeps.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import Permission
from django.test import Client

from crm.models import AuditEntry
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's


def attempt(client: Client, username: str, password: str, address: str = "198.51.100.7") -> object:
    return client.post(
        LOGIN, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=address
    )


def logged_in(client: Client) -> bool:
    return SESSION_KEY in client.session


def signin_entries() -> list[AuditEntry]:
    return [e for e in AuditEntry.objects.order_by("id") if "signin" in (e.additional_data or {})]


def test_fifty_wrong_passwords_then_the_right_one_does_not_log_in(teammate):
    # given an attacker who tries 50 wrong passwords for a real account
    client = Client()
    for i in range(50):
        attempt(client, "teammate", f"guess-{i}")
    # when the right password comes next
    response = attempt(client, "teammate", PASSWORD)
    # then it is refused (locked out), with no session for the account
    assert response.status_code == 429
    assert not logged_in(client)


def test_the_lockout_holds_for_the_account_from_another_address(teammate):
    # given the account locked out from one address
    for i in range(settings.AXES_FAILURE_LIMIT):
        attempt(Client(), "teammate", f"guess-{i}", address="198.51.100.7")
    # when the right password comes from another address
    client = Client()
    response = attempt(client, "teammate", PASSWORD, address="203.0.113.9")
    # then it is refused too (lockout per username)
    assert response.status_code == 429
    assert not logged_in(client)


def test_the_lockout_holds_for_an_address_spraying_many_accounts(teammate, owner):
    # given one address trying a wrong password on many accounts (password spraying)
    for i in range(settings.AXES_FAILURE_LIMIT):
        attempt(Client(), f"nobody{i}", "Winter2026!", address="198.51.100.7")
    # when the same address tries a real account with its right password
    client = Client()
    response = attempt(client, "owner", PASSWORD, address="198.51.100.7")
    # then it is refused (lockout per address), and another address still gets in
    assert response.status_code == 429
    assert not logged_in(client)
    other = Client()
    attempt(other, "owner", PASSWORD, address="203.0.113.9")
    assert logged_in(other)


def test_after_the_cool_off_the_right_password_logs_in(teammate):
    # given an account locked out
    with time_machine.travel(dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC), tick=False):
        for i in range(settings.AXES_FAILURE_LIMIT):
            attempt(Client(), "teammate", f"guess-{i}")
    # when the right password comes after the cool-off period
    later = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC) + settings.AXES_COOLOFF_TIME
    with time_machine.travel(later + dt.timedelta(seconds=1), tick=False):
        client = Client()
        attempt(client, "teammate", PASSWORD)
        # then it logs in
        assert logged_in(client)


def test_a_few_mistakes_do_not_lock_anyone_out(teammate):
    # given fewer wrong passwords than the limit
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(Client(), "teammate", f"typo-{i}")
    # when the right one follows, then it logs in
    client = Client()
    attempt(client, "teammate", PASSWORD)
    assert logged_in(client)


def test_a_failed_sign_in_leaves_a_trace_naming_the_account_by_id_only(teammate):
    # when a wrong password is given for a real account
    attempt(Client(), "teammate", "wrong-password-123")
    # then the audit trail has one failed sign-in entry for that user id, from that address
    [entry] = signin_entries()
    assert entry.additional_data["signin"]["event"] == "failed"
    assert entry.object_pk == str(teammate.pk)
    assert entry.remote_addr == "198.51.100.7"
    # and neither the password nor the name as typed is written anywhere in it
    text = repr(entry.__dict__)
    assert "wrong-password-123" not in text
    assert "teammate" not in text


def test_a_failed_sign_in_of_an_unknown_name_keeps_only_a_keyed_hash(teammate):
    # given a name that is no account (it could be someone's e-mail address, or a password typed in the
    # wrong box)
    typed = "hanako.suzuki@example.com"
    # when it is tried twice
    attempt(Client(), typed, "whatever-1")
    attempt(Client(), typed, "whatever-2")
    # then both entries carry the same keyed hash and never the name itself
    first, second = signin_entries()
    assert first.additional_data["signin"]["event"] == "failed"
    assert (
        first.additional_data["signin"]["username_hash"] == second.additional_data["signin"]["username_hash"]
    )
    assert typed not in repr(first.__dict__)
    assert "hanako" not in repr(first.__dict__)


def test_the_lockout_table_keeps_no_unknown_name_in_clear(db):
    # when an unknown name (perhaps a password typed in the wrong box) is tried
    from axes.models import AccessAttempt

    attempt(Client(), "S3cret-Passw0rd!", "whatever")
    # then the lockout record exists but holds only a keyed hash of it
    [row] = AccessAttempt.objects.all()
    assert "S3cret-Passw0rd!" not in repr(row.__dict__)


def test_a_successful_sign_in_is_audited_with_its_user(teammate):
    # when the right password is given
    client = Client()
    attempt(client, "teammate", PASSWORD)
    # then the audit trail has a successful sign-in entry by that user
    assert logged_in(client)
    [entry] = signin_entries()
    assert entry.additional_data["signin"]["event"] == "succeeded"
    assert entry.actor_id == teammate.pk
    assert entry.object_pk == str(teammate.pk)


def test_a_locked_out_attempt_is_audited_as_such(teammate):
    # given an account locked out
    for i in range(settings.AXES_FAILURE_LIMIT):
        attempt(Client(), "teammate", f"guess-{i}")
    # when the right password comes while locked
    attempt(Client(), "teammate", PASSWORD)
    # then that attempt is recorded as refused by the lockout
    last = signin_entries()[-1]
    assert last.additional_data["signin"]["event"] == "failed"
    assert last.additional_data["signin"]["locked_out"] is True


def test_the_security_role_unlocks_an_account_in_the_admin(teammate, security_user, auditor):
    # given an account locked out
    from axes.models import AccessAttempt

    for i in range(settings.AXES_FAILURE_LIMIT):
        attempt(Client(), "teammate", f"guess-{i}")
    ids = list(AccessAttempt.objects.values_list("pk", flat=True))
    assert ids
    # when the auditor (no such right) tries to remove the lockout in the admin, then it is refused
    refused = Client()
    refused.force_login(auditor)
    page = refused.get("/admin/axes/accessattempt/")
    assert page.status_code == 403
    assert AccessAttempt.objects.count() == len(ids)
    # when the security role deletes the lockout records in the admin
    security = Client()
    security.force_login(security_user)
    assert security.get("/admin/axes/accessattempt/").status_code == 200
    security.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
    )
    # then the account signs in again with its password
    assert not AccessAttempt.objects.exists()
    client = Client()
    attempt(client, "teammate", PASSWORD)
    assert logged_in(client)


def test_only_the_security_role_holds_the_unlock_permission(security_user, privacy_officer, auditor):
    perm = Permission.objects.get(content_type__app_label="axes", codename="delete_accessattempt")
    holders = {
        u.username for u in (security_user, privacy_officer, auditor) if u.has_perm(f"axes.{perm.codename}")
    }
    assert holders == {"security"}


def test_a_staff_user_without_a_role_gets_no_lockout_page(db):
    # a user of no role cannot see the lockout records (the records name accounts and addresses)
    nobody = UserFactory(username="norole")
    client = Client()
    client.force_login(nobody)
    assert client.get("/admin/axes/accessattempt/").status_code in (403, 302)


# --- behind a reverse proxy ------------------------------------------------------------------------

PROXY = "192.0.2.10"  # the reverse proxy's address, as REMOTE_ADDR of every request it forwards


def through_proxy(client: Client, username: str, password: str, forwarded_for: str) -> object:
    return client.post(
        LOGIN,
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=forwarded_for,
    )


def test_behind_a_proxy_one_clients_failures_do_not_lock_out_the_others(settings, teammate, owner):
    # given the CRM behind one reverse proxy, which appends the client's address to X-Forwarded-For
    settings.TRUSTED_PROXY_HOPS = 1
    # when one client fails as often as the limit allows
    for i in range(settings.AXES_FAILURE_LIMIT):
        through_proxy(Client(), f"nobody{i}", "guess", forwarded_for="203.0.113.1")
    # then another client, through the same proxy, still signs in
    other = Client()
    through_proxy(other, "owner", PASSWORD, forwarded_for="203.0.113.2")
    assert logged_in(other)
    # and the first client is locked out, even when it puts a made-up address in front of its own
    attacker = Client()
    response = through_proxy(attacker, "teammate", PASSWORD, forwarded_for="198.51.100.99, 203.0.113.1")
    assert response.status_code == 429
    assert not logged_in(attacker)


def test_without_a_trusted_proxy_a_forwarded_for_header_is_ignored(teammate):
    # given no proxy configured (the default), an attacker who makes up X-Forwarded-For on every try
    for i in range(settings.AXES_FAILURE_LIMIT):
        attempt_client = Client()
        attempt_client.post(
            LOGIN,
            {"username": f"nobody{i}", "password": "guess"},
            REMOTE_ADDR="198.51.100.7",
            HTTP_X_FORWARDED_FOR=f"203.0.113.{i}",
        )
    # then the address is still the connection's: locked out
    client = Client()
    response = attempt(client, "teammate", PASSWORD, address="198.51.100.7")
    assert response.status_code == 429


@pytest.mark.parametrize(
    ("hops", "forwarded_for", "recorded"),
    [
        (0, "203.0.113.66", "192.0.2.10"),  # no proxy configured: the header is the caller's invention
        (1, "198.51.100.99, 203.0.113.5", "203.0.113.5"),  # one proxy: the address it saw
    ],
)
def test_the_audit_trail_records_the_address_the_lockout_counts(
    settings, owner, customer, hops, forwarded_for, recorded
):
    # given a signed-in team lead, and the CRM behind `hops` trusted proxies
    settings.TRUSTED_PROXY_HOPS = hops
    client = Client()
    client.force_login(owner)
    # when they open a customer's page through a request carrying a made-up X-Forwarded-For in front
    response = client.get(
        f"/admin/crm/customer/{customer.pk}/change/",
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=forwarded_for,
        HTTP_X_FORWARDED_PORT="4444",
    )
    assert response.status_code == 200
    # then the access entry names the connection's address (or the trusted proxy's view), never the invention
    entries = AuditEntry.objects.filter(object_pk=str(customer.pk), action=AuditEntry.Action.ACCESS)
    entry = entries.latest("pk")
    assert entry.remote_addr == recorded
    assert entry.remote_port == (None if hops == 0 else 4444)
