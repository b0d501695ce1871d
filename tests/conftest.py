"""Standing fixtures: three users around one team — an owner (team lead), a teammate and an outsider — so
that every view and selector has its "no permission" case; plus the other roles."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.backends.signals import connection_created
from django.utils import translation

from crm import services
from crm.models import TeamMembership
from crm.paginators import _ESTIMATES
from crm.permissions import ROLE_AUDITOR, ROLE_PRIVACY, ROLE_SECURITY, ROLE_STAFF, ROLE_SUPPORT
from tests.factories import CustomerFactory, TeamFactory, UserFactory

# The integration API tests' fixtures (an API client and its token, rate limits), for any test that asks.
pytest_plugins = ["tests.api_support"]


def _allow_flush(sender: object, connection: object, **kwargs: object) -> None:
    """Transactional tests are flushed with TRUNCATE, which the append-only tables refuse unless the session
    allows it (crm migration 0012) and its role is a member of crm_maintenance (0015, granted below): every
    connection the tests open does, except where a test turns it off."""
    with connection.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute("SET crm.allow_truncate = on")


connection_created.connect(_allow_flush, dispatch_uid="tests.allow_truncate")


@pytest.fixture(scope="session", autouse=True)
def _close_every_connection_of_this_thread(django_db_setup: None) -> Iterator[None]:
    """Before the test database is dropped, close this thread's connections of every context, not only the
    current one: Django keeps one connection per contextvars context (asgiref Local), Playwright's sync API
    (tests/e2e) runs code in contexts of its own, and a connection opened there kept the database from being
    dropped ("being accessed by other users"). Torn down before django_db_setup, which it depends on."""
    yield
    from django.db.backends.base.base import BaseDatabaseWrapper

    # type(o), not isinstance: isinstance asks a lazy object for __class__, which evaluates it (the test
    # client's lazy resolver_match of a 404 response raises Resolver404; django-csp's per-request nonce
    # raises when evaluated after its response).
    for wrapper in [o for o in gc.get_objects() if issubclass(type(o), BaseDatabaseWrapper)]:
        if wrapper.connection is not None and wrapper._thread_ident == threading.get_ident():
            wrapper.close()


@pytest.fixture(scope="session", autouse=True)
def _maintenance_role(django_db_setup: None, django_db_blocker: object) -> None:
    """The test suite empties the append-only tables between transactional tests, as an administrator would a
    scratch database: its role gets crm_maintenance (a superuser is a member of every role already)."""
    with django_db_blocker.unblock(), connection.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute("SELECT pg_has_role(current_user, 'crm_maintenance', 'MEMBER')")
        if not cur.fetchone()[0]:
            cur.execute("GRANT crm_maintenance TO CURRENT_USER")


@pytest.fixture(autouse=True)
def _default_language() -> Iterator[None]:
    """Every test starts in the default language (Japanese), whatever an earlier test left active in this
    thread: a request in English activates English (LocaleMiddleware) and nothing switches it back."""
    with translation.override(settings.LANGUAGE_CODE):
        yield


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    assert connection.vendor == "postgresql"
    # A transactional test's flush recreates content types with new ids; never reuse cached old ones.
    ContentType.objects.clear_cache()
    # Row estimates are kept per process (crm.paginators); a test's tables are not the previous test's.
    _ESTIMATES.clear()


@pytest.fixture(autouse=True)
def _force_login_includes_the_second_factor(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Client.force_login` stands for a whole sign-in: the password and, where the user needs one, the second
    factor (crm.signin), as a recovery-code device verified in the session. Tests of the second factor itself
    are marked `real_second_factor` and get Django's force_login as it is."""
    if request.node.get_closest_marker("real_second_factor"):
        return
    from django.test import Client

    original = Client.force_login

    def force_login(self: Client, user: object, backend: str | None = None) -> None:
        original(self, user, backend)
        from django_otp import DEVICE_ID_SESSION_KEY
        from django_otp.plugins.otp_static.models import StaticDevice

        device, _created = StaticDevice.objects.get_or_create(
            user=user, name="tests", defaults={"confirmed": True}
        )
        session = self.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()

    monkeypatch.setattr(Client, "force_login", force_login)


@pytest.fixture
def team(db):
    return TeamFactory(code="tokyo-sales", name="東京営業部")


@pytest.fixture
def other_team(db):
    return TeamFactory(code="osaka-cs", name="大阪CS")


@pytest.fixture
def owner(team):
    """Team lead of `team`: view, change and erase its customers; masked personal data."""
    user = UserFactory(username="owner", roles=[ROLE_STAFF])
    services.team_member_add(team=team, user=user, role=TeamMembership.Role.LEAD)
    return user


@pytest.fixture
def teammate(team):
    """Member of `team`: view and change its customers; masked personal data."""
    user = UserFactory(username="teammate", roles=[ROLE_STAFF])
    services.team_member_add(team=team, user=user, role=TeamMembership.Role.MEMBER)
    return user


@pytest.fixture
def outsider(other_team):
    """Staff of another team: must be refused everything about `team`'s customers."""
    user = UserFactory(username="outsider", roles=[ROLE_STAFF])
    services.team_member_add(team=other_team, user=user, role=TeamMembership.Role.LEAD)
    return user


@pytest.fixture
def privacy_officer(db):
    return UserFactory(username="privacy", roles=[ROLE_PRIVACY])


@pytest.fixture
def support_agent(db):
    return UserFactory(username="support", roles=[ROLE_SUPPORT])


@pytest.fixture
def security_user(db):
    return UserFactory(username="security", roles=[ROLE_SECURITY])


@pytest.fixture
def auditor(db):
    return UserFactory(username="auditor", roles=[ROLE_AUDITOR])


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_superuser=True)


@pytest.fixture
def customer(team):
    return CustomerFactory(
        team=team,
        family_name="山田",
        given_name="太郎",
        family_name_kana="ヤマダ",
        given_name_kana="タロウ",
        email="Taro.Yamada@Example.com",
        phone="090-1234-5678",
        member_no="M000000001",
    )


@pytest.fixture
def foreign_customer(other_team):
    return CustomerFactory(team=other_team, email="hanako@example.org", phone="03-1234-5678")
