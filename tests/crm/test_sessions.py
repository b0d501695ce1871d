"""crm.sessions: database sessions read by a constant statement behave as Django's own."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone

from crm.sessions import SessionStore

pytestmark = pytest.mark.django_db


def test_a_stored_session_is_read_back_and_an_expired_or_unknown_one_is_not():
    # given a saved session
    store = SessionStore()
    store["who"] = "staff"
    store.save()
    key = store.session_key

    # then a new store with its key reads the data
    assert SessionStore(session_key=key)["who"] == "staff"

    # when it expires, then it reads as empty and the key is dropped (a new one will be issued)
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - dt.timedelta(seconds=1))
    expired = SessionStore(session_key=key)
    assert expired.load() == {}
    assert expired.session_key is None
    # and an unknown key likewise
    assert SessionStore(session_key="x" * 32).load() == {}


def test_a_logged_in_staff_user_stays_logged_in_across_requests(client, owner):
    # given a logged-in user
    client.force_login(owner)

    # when two pages are requested, then both are served to that user (no redirect to the login page)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/crm/customer/").status_code == 200
