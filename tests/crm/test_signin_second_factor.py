"""Second factor (django-otp) for the roles that see personal data in clear or can erase (issue #13).

These tests sign in with the real login form (or Django's own force_login, which here does not stand in for
the second factor: marked real_second_factor) and go through enrolment and verification as a person would,
the codes computed from the device's key as an authenticator app computes them.
"""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import Group
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from crm.models import AuditEntry
from crm.permissions import ROLE_PRIVACY
from tests.crm.test_settings import SETUP, production_env, refused, run

pytestmark = [pytest.mark.django_db, pytest.mark.real_second_factor]

PASSWORD = "correct-horse-battery"
ENROL = "/admin/signin/otp/enrol/"
VERIFY = "/admin/signin/otp/"


def sign_in(username: str) -> Client:
    client = Client()
    response = client.post("/admin/login/", {"username": username, "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 302, response.content[:500]
    return client


def code_for(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """The code an authenticator app shows now, or `steps_ahead` periods later (a code once accepted is
    never accepted again: a later sign-in within the same 30 seconds uses the next period's, which the
    device's tolerance of one period accepts)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def unthrottled(device: TOTPDevice) -> None:
    """As if the growing delay after a wrong code had passed (no sleeping in tests)."""
    device.throttle_reset()


def events(user_id: int) -> list[str]:
    return [
        e.additional_data["signin"]["event"]
        for e in AuditEntry.objects.filter(object_pk=str(user_id)).order_by("id")
        if "signin" in (e.additional_data or {})
    ]


def enrol(client: Client) -> tuple[TOTPDevice, list[str]]:
    assert client.get(ENROL).status_code == 200
    device = TOTPDevice.objects.get(confirmed=False)
    page = client.post(ENROL, {"token": code_for(device), "next": "/admin/"})
    assert page.status_code == 200
    codes = re.findall(r"<li><code>([a-z0-9]+)</code></li>", page.content.decode())
    device.refresh_from_db()
    return device, codes


@pytest.mark.parametrize("role_fixture", ["privacy_officer", "support_agent", "superuser", "owner"])
def test_a_role_that_sees_clear_data_or_erases_must_enrol_before_any_admin_page(role_fixture, request):
    # given a user who sees personal data in clear or can erase (an owner is a team lead: erases)
    user = request.getfixturevalue(role_fixture)
    # when they sign in with the right password and open the admin
    client = sign_in(user.username)
    response = client.get("/admin/crm/customer/")
    # then they are sent to enrol a second factor, and no admin page is served meanwhile
    assert response.status_code == 302
    assert response["Location"].startswith(ENROL)
    assert client.get("/admin/").status_code == 302


def test_a_masked_staff_member_and_the_auditor_need_no_second_factor(teammate, auditor):
    # given users who see personal data masked only, or no customer data
    for user in (teammate, auditor):
        # when they sign in, then the admin opens at once
        assert sign_in(user.username).get("/admin/").status_code == 200


def test_enrolment_shows_a_qr_code_and_the_key_and_confirms_with_a_code(privacy_officer):
    # given the officer at the enrolment page after the password
    client = sign_in("privacy")
    page = client.get(ENROL).content.decode()
    device = TOTPDevice.objects.get(user=privacy_officer)
    # then it shows the QR code as inline SVG (no image URL carrying the key) and the key for typing
    assert "<svg" in page and "otpauth" not in page
    assert re.search(r'<code id="otp-secret">[A-Z2-7 ]+</code>', page)
    # when a wrong code is given, then the device stays unconfirmed and the admin closed
    client.post(ENROL, {"token": "000000" if code_for(device) != "000000" else "111111"})
    device.refresh_from_db()
    assert not device.confirmed
    assert client.get("/admin/").status_code == 302
    unthrottled(device)
    # when the code from the app is given
    device, codes = enrol(client)
    # then the device is confirmed, ten single-use recovery codes are shown once, and the admin opens
    assert device.confirmed
    assert len(codes) == 10 and len(set(codes)) == 10
    assert client.get("/admin/").status_code == 200
    assert "second_factor_enrolled" in events(privacy_officer.pk)


def test_every_later_sign_in_asks_for_a_code_and_records_the_outcome(privacy_officer):
    # given an enrolled officer
    device, _codes = enrol(sign_in("privacy"))
    # when they sign in again with the password only
    client = sign_in("privacy")
    # then the admin sends them to the code page
    response = client.get("/admin/")
    assert response["Location"].startswith(VERIFY)
    # when a wrong code is given, then it is refused and recorded
    client.post(VERIFY, {"token": "12345678"})
    assert client.get("/admin/").status_code == 302
    assert events(privacy_officer.pk)[-1] == "second_factor_failed"
    # when the code from the app is given (after the throttle's delay for that one failure)
    unthrottled(device)
    client.post(VERIFY, {"token": code_for(device, steps_ahead=1)})
    # then the admin opens, and the success is recorded
    assert client.get("/admin/").status_code == 200
    assert events(privacy_officer.pk)[-1] == "second_factor_verified"


def test_a_recovery_code_works_once(privacy_officer):
    # given an enrolled officer who lost the phone
    _device, codes = enrol(sign_in("privacy"))
    # when a recovery code is given at the next sign-in, then the admin opens
    first = sign_in("privacy")
    first.post(VERIFY, {"token": codes[0]})
    assert first.get("/admin/").status_code == 200
    # when the same code is given again at another sign-in, then it is refused
    second = sign_in("privacy")
    second.post(VERIFY, {"token": codes[0]})
    assert second.get("/admin/").status_code == 302


def test_guessing_codes_is_throttled(privacy_officer):
    # given an enrolled officer whose password an attacker has
    device, _codes = enrol(sign_in("privacy"))
    client = sign_in("privacy")
    # when the attacker guesses wrong codes several times
    for guess in ("000001", "000002", "000003", "000004", "000005"):
        client.post(VERIFY, {"token": guess})
    # then even the right code is refused right after (django-otp's growing delay)
    client.post(VERIFY, {"token": code_for(device, steps_ahead=1)})
    assert client.get("/admin/").status_code == 302
    # and accepted once the delay has passed
    unthrottled(device)
    client.post(VERIFY, {"token": code_for(device, steps_ahead=1)})
    assert client.get("/admin/").status_code == 200


def test_a_malformed_code_is_refused_with_a_message_and_changes_nothing(privacy_officer):
    enrol(sign_in("privacy"))
    client = sign_in("privacy")
    # when the code field carries junk (too long, symbols)
    response = client.post(VERIFY, {"token": "x" * 5000 + "<script>"})
    # then the page answers with the form's error, not a server error
    assert response.status_code == 200
    assert "確認コード" in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_the_security_role_resets_a_lost_second_factor(
    privacy_officer, security_user, auditor, django_capture_on_commit_callbacks
):
    # given an enrolled officer with a live, verified session
    device, _codes = enrol(officer := sign_in("privacy"))
    assert officer.get("/admin/").status_code == 200
    # when the auditor (no such right) tries the reset, then it is refused
    refused_client = Client()
    refused_client.force_login(auditor)
    assert refused_client.get("/admin/otp_totp/totpdevice/").status_code == 403
    # when the security role resets it in the admin
    security = Client()
    security.force_login(security_user)
    assert security.get("/admin/otp_totp/totpdevice/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        security.post(
            "/admin/otp_totp/totpdevice/",
            {"action": "reset_second_factor", "_selected_action": [device.pk]},
        )
    # then the officer's devices are gone, the officer's session has ended, and the reset is recorded
    assert not TOTPDevice.objects.filter(user=privacy_officer).exists()
    assert not StaticDevice.objects.filter(user=privacy_officer).exists()
    assert SESSION_KEY not in officer.session
    assert "second_factor_reset" in events(privacy_officer.pk)
    reset = AuditEntry.objects.filter(object_pk=str(privacy_officer.pk), actor=security_user)
    assert reset.exists()
    # and the next sign-in enrols anew
    assert sign_in("privacy").get("/admin/")["Location"].startswith(ENROL)


def test_the_device_list_shows_no_key(privacy_officer, security_user):
    device, _codes = enrol(sign_in("privacy"))
    security = Client()
    security.force_login(security_user)
    page = security.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/").content.decode()
    assert device.key not in page
    assert security.get("/admin/otp_static/staticdevice/").status_code == 404


def test_a_role_given_later_needs_the_second_factor_from_its_next_request(teammate):
    # given a masked staff member signed in without a second factor
    client = sign_in("teammate")
    assert client.get("/admin/").status_code == 200
    # when the privacy officer role is added to the account
    teammate.groups.add(Group.objects.get(name=ROLE_PRIVACY))
    # then the next admin page asks for enrolment
    assert client.get("/admin/")["Location"].startswith(ENROL)


def test_the_development_bypass_lets_the_demo_logins_in(privacy_officer, settings):
    # given the development-only bypass (./dev up sets it)
    settings.OTP_DEV_BYPASS = True
    # when the officer signs in with the password only, then the admin opens
    assert sign_in("privacy").get("/admin/").status_code == 200


def test_production_refuses_the_development_bypass():
    # when production settings carry the bypass
    result = run(SETUP, production_env(OTP_DEV_BYPASS="true"))
    # then start-up stops, naming it
    assert refused(result, "OTP_DEV_BYPASS is for development only")
