"""crm.auth.CrmModelBackend answers exactly what Django's ModelBackend answers, from one statement."""

from __future__ import annotations

import pytest
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission

from crm.auth import CrmModelBackend
from crm.permissions import ROLE_PRIVACY, ROLE_STAFF
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _fresh(user):
    return type(user).objects.get(pk=user.pk)  # no permission caches


@pytest.mark.parametrize("roles", [[ROLE_STAFF], [ROLE_STAFF, ROLE_PRIVACY], []])
def test_same_permissions_as_model_backend(roles):
    # given a user with role groups and one permission of their own
    user = UserFactory()
    user.groups.add(*Group.objects.filter(name__in=roles))
    user.user_permissions.add(Permission.objects.get(codename="view_auditentry"))

    # when both backends are asked
    ours, django = CrmModelBackend(), ModelBackend()
    u1, u2 = _fresh(user), _fresh(user)

    # then user, group and all permissions are the same sets
    assert ours.get_user_permissions(u1) == django.get_user_permissions(u2) == {"crm.view_auditentry"}
    assert ours.get_group_permissions(u1) == django.get_group_permissions(u2)
    assert ours.get_all_permissions(u1) == django.get_all_permissions(u2)
    assert ours.has_perm(u1, "crm.view_customer") is (ROLE_STAFF in roles)


def test_superuser_and_inactive_user():
    # given a superuser and a deactivated staff user
    boss = UserFactory(is_superuser=True)
    gone = UserFactory(is_active=False)
    gone.groups.add(Group.objects.get(name=ROLE_STAFF))
    ours, django = CrmModelBackend(), ModelBackend()

    # then the superuser holds every permission, the inactive user none, and is not loaded for a session
    assert ours.get_all_permissions(_fresh(boss)) == django.get_all_permissions(_fresh(boss))
    assert ours.get_all_permissions(_fresh(gone)) == set()
    assert ours.get_user(gone.pk) is None
    assert ours.get_user(boss.pk).pk == boss.pk
    assert ours.get_user(10**9) is None


@pytest.mark.parametrize("roles", [[ROLE_STAFF], [ROLE_STAFF, ROLE_PRIVACY], []])
def test_the_session_user_comes_with_its_permissions_in_one_statement(roles):
    # given a user with role groups and one permission of their own
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    user = UserFactory()
    user.groups.add(*Group.objects.filter(name__in=roles))
    user.user_permissions.add(Permission.objects.get(codename="view_auditentry"))
    # when the backend loads it for a request and the admin asks what it may do
    with CaptureQueriesContext(connection) as ctx:
        loaded = CrmModelBackend().get_user(user.pk)
        perms = loaded.get_all_permissions()
        may_view = loaded.has_perm("crm.view_customer")
    # then one statement answered both, with ModelBackend's answers
    assert len(ctx.captured_queries) == 1
    assert perms == ModelBackend().get_all_permissions(_fresh(user))
    assert ModelBackend().get_user_permissions(_fresh(user)) == {"crm.view_auditentry"}
    assert may_view is (ROLE_STAFF in roles)
