"""The permission matrix: who may view, change and delete which customers, through the one gate
(`Customer.objects.restrict`) and through the admin that is built on it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, Permission
from django.urls import reverse

from crm import services
from crm.models import Customer, TeamMembership
from tests.crm.adminforms import admin_form_data
from tests.factories import UserFactory

# What each standing user may do with `customer` (a customer of `team`).
ALLOWED = {
    "owner": {"view", "change", "delete"},  # team lead
    "teammate": {"view", "change"},
    "outsider": set(),  # lead of another team
    "privacy_officer": {"view"},  # all teams, read only
    "support_agent": {"view", "delete"},  # all teams: reads, and erases on a request (開示等請求)
    "security_user": set(),  # logs only
    "auditor": set(),  # logs only
    "superuser": {"view", "change", "delete"},
}
MATRIX = [
    (user, action, action in allowed)
    for user, allowed in ALLOWED.items()
    for action in sorted(ALLOWED["owner"])
]


def _change_url(customer: Customer) -> str:
    return reverse("admin:crm_customer_change", args=[customer.pk])


def _user_with_model_perms(*codenames: str):
    """A staff user holding model permissions directly, in no role and no team."""
    user = UserFactory(username="model-perms-only")
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="crm", codename__in=codenames)
    )
    return user


# --- the gate ----------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("user_name", "action", "allowed"), MATRIX)
def test_restrict_matrix(request, customer, user_name, action, allowed):
    # given one of the standing users and a customer of `team`
    user = request.getfixturevalue(user_name)
    # when the gate is asked for the customers the user may act on
    visible = Customer.objects.restrict(user, action)
    # then the customer is there exactly when the role and team allow the action
    assert visible.filter(pk=customer.pk).exists() is allowed


@pytest.mark.django_db
def test_outsider_sees_only_their_own_team(customer, foreign_customer, outsider):
    # given customers of two teams
    # when the other team's lead asks the gate
    # then only their team's customer comes back, for every action
    for action in ("view", "change", "delete"):
        assert list(Customer.objects.restrict(outsider, action)) == [foreign_customer]


@pytest.mark.django_db
@pytest.mark.parametrize("user_name", ["privacy_officer", "support_agent"])
def test_privacy_officer_and_support_desk_see_every_team(request, customer, foreign_customer, user_name):
    # given the two roles that answer for every customer
    user = request.getfixturevalue(user_name)
    # when they ask the gate to view, and to change
    # then they see both teams' customers, and may change none
    assert set(Customer.objects.restrict(user, "view")) == {customer, foreign_customer}
    assert not Customer.objects.restrict(user, "change").exists()


@pytest.mark.django_db
def test_only_the_request_desk_erases_across_teams(
    customer, foreign_customer, support_agent, privacy_officer
):
    # given the request desk and the privacy officer, both seeing every team
    # when they ask the gate to erase
    # then the request desk may erase every team's customers, the privacy officer none (oversight only)
    assert set(Customer.objects.restrict(support_agent, "delete")) == {customer, foreign_customer}
    assert not Customer.objects.restrict(privacy_officer, "delete").exists()


@pytest.mark.django_db
def test_model_permission_alone_opens_no_customer(customer, foreign_customer):
    # given a user holding crm.view_customer and crm.change_customer but no team (guardian's
    # accept_global_perms would turn these into "every row")
    user = _user_with_model_perms("view_customer", "change_customer", "delete_customer")
    assert user.has_perm("crm.view_customer")
    # when they ask the gate
    # then nothing is visible, changeable or deletable
    for action in ("view", "change", "delete"):
        assert not Customer.objects.restrict(user, action).exists()


@pytest.mark.django_db
def test_team_permission_without_the_role_opens_nothing(team, customer, security_user):
    # given a security user put in the customer's team (team object permissions, but a role without
    # crm.view_customer)
    services.team_member_add(team=team, user=security_user, role=TeamMembership.Role.LEAD)
    # when they ask the gate to view, change or erase
    # then the role's missing model permission wins, for erasure too
    for action in ("view", "change", "delete"):
        assert not Customer.objects.restrict(security_user, action).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("user_name", ["owner", "superuser", "privacy_officer"])
def test_inactive_users_see_nothing(request, customer, user_name):
    # given a user who was deactivated
    user = request.getfixturevalue(user_name)
    user.is_active = False
    user.save()
    # when they ask the gate, then nothing is returned for any action
    for action in ("view", "change", "delete"):
        assert not Customer.objects.restrict(user, action).exists()


@pytest.mark.django_db
def test_anonymous_sees_nothing_and_unknown_actions_are_refused(customer, owner):
    # given an anonymous visitor, then the gate is empty
    assert not Customer.objects.restrict(AnonymousUser(), "view").exists()
    # given an action the gate does not know, then it refuses rather than guessing
    with pytest.raises(ValueError, match="Unknown action"):
        Customer.objects.restrict(owner, "export")


@pytest.mark.django_db
def test_leaving_the_team_closes_the_gate(team, customer, teammate):
    # given the teammate removed from the team
    membership = TeamMembership.objects.get(team=team, user=teammate)
    services.team_member_remove(membership=membership)
    # when they ask the gate, then the team's customers are gone
    assert not Customer.objects.restrict(teammate, "view").exists()


# --- the admin ---------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("user_name", "sees_ours", "sees_theirs"),
    [
        ("owner", True, False),
        ("teammate", True, False),
        ("outsider", False, True),
        ("privacy_officer", True, True),
        ("support_agent", True, True),
        ("superuser", True, True),
    ],
)
def test_changelist_lists_what_the_gate_allows(
    client, request, customer, foreign_customer, user_name, sees_ours, sees_theirs
):
    # given a user of the admin
    client.force_login(request.getfixturevalue(user_name))
    # when they open the customer list
    response = client.get(reverse("admin:crm_customer_changelist"))
    # then it lists exactly the customers the gate lets them view
    html = response.content.decode()
    assert response.status_code == 200
    assert (_change_url(customer) in html) is sees_ours
    assert (_change_url(foreign_customer) in html) is sees_theirs


@pytest.mark.django_db
def test_changelist_of_a_user_with_only_the_model_permission_is_empty(client, customer, foreign_customer):
    # given a staff user with crm.view_customer and no team
    client.force_login(_user_with_model_perms("view_customer"))
    # when they open the list
    response = client.get(reverse("admin:crm_customer_changelist"))
    # then it opens but lists nobody
    html = response.content.decode()
    assert response.status_code == 200
    assert _change_url(customer) not in html
    assert _change_url(foreign_customer) not in html


@pytest.mark.django_db
@pytest.mark.parametrize("user_name", ["security_user", "auditor"])
def test_log_roles_are_refused_customer_pages(client, request, customer, user_name):
    # given the roles that read logs only
    client.force_login(request.getfixturevalue(user_name))
    # when they open the list, a customer or the add page, then each is refused
    assert client.get(reverse("admin:crm_customer_changelist")).status_code == 403
    assert client.get(_change_url(customer)).status_code == 403
    assert client.get(reverse("admin:crm_customer_add")).status_code == 403


@pytest.mark.django_db
def test_inactive_user_is_sent_to_the_login(client, owner, customer):
    # given a deactivated owner whose session still exists
    client.force_login(owner)
    owner.is_active = False
    owner.save()
    # when they open the customer, then the admin asks them to log in and shows nothing
    response = client.get(_change_url(customer))
    assert response.status_code == 302
    assert reverse("admin:login") in response.url


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("user_name", "editable"),
    [("owner", True), ("teammate", True), ("privacy_officer", False), ("support_agent", False)],
)
def test_change_page_opens_for_viewers_editable_only_for_changers(
    client, request, customer, user_name, editable
):
    # given a user who may view the customer
    client.force_login(request.getfixturevalue(user_name))
    # when they open its change page
    response = client.get(_change_url(customer))
    # then it opens, with a save button only for those who may change it
    assert response.status_code == 200
    assert ('name="_save"' in response.content.decode()) is editable


@pytest.mark.django_db
def test_outsider_is_redirected_from_a_customer_without_learning_anything(client, outsider, customer):
    # given an outsider
    client.force_login(outsider)
    # when they open the customer of another team, and a customer number that does not exist
    response = client.get(_change_url(customer), follow=True)
    missing = client.get(reverse("admin:crm_customer_change", args=[customer.pk + 10_000]), follow=True)
    # then both send them to the admin index with the same "does not exist" message
    assert response.redirect_chain == [(reverse("admin:index"), 302)]
    messages = [str(m).replace(str(customer.pk), "N") for m in response.context["messages"]]
    assert len(messages) == 1
    assert messages == [str(m).replace(str(customer.pk + 10_000), "N") for m in missing.context["messages"]]
    html = response.content.decode()
    for clue in ("ta***", "taro.yamada", "山*", "山田", "090-", "M000000001"):
        assert clue not in html


@pytest.mark.django_db
@pytest.mark.parametrize("user_name", ["owner", "teammate"])
def test_team_members_may_change_through_the_admin(client, request, customer, user_name):
    # given a member of the customer's team
    user = request.getfixturevalue(user_name)
    client.force_login(user)
    # when they change how the customer's data was acquired
    data = admin_form_data(user, customer, collection_channel="store_pos")
    response = client.post(_change_url(customer), data)
    # then it is saved
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.collection_channel == "store_pos"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("user_name", "status_code"), [("outsider", 302), ("privacy_officer", 403), ("support_agent", 403)]
)
def test_change_is_refused_to_those_who_may_not_change(
    client, request, customer, superuser, user_name, status_code
):
    # given a user who may not change the customer (other team, or a read-only role)
    client.force_login(request.getfixturevalue(user_name))
    data = admin_form_data(superuser, customer, collection_channel="store_pos", email="evil@example.com")
    # when they post a change anyway
    response = client.post(_change_url(customer), data)
    # then it is refused and nothing is written
    assert response.status_code == status_code
    customer.refresh_from_db()
    assert (customer.collection_channel, customer.email) == ("web_form", "taro.yamada@example.com")


@pytest.mark.django_db
def test_a_customer_cannot_be_moved_to_a_team_the_user_may_not_change(client, teammate, customer, other_team):
    # given a teammate
    client.force_login(teammate)
    # when they post the customer with another team's id
    data = admin_form_data(teammate, customer, team=other_team.pk)
    response = client.post(_change_url(customer), data)
    # then the form refuses the choice and the customer stays in its team
    assert response.status_code == 200
    assert "team" in response.context["adminform"].form.errors
    customer.refresh_from_db()
    assert customer.team_id != other_team.pk


@pytest.mark.django_db
def test_acquisition_time_and_last_activity_are_not_edited_in_the_admin(client, superuser, customer):
    # given a superuser posting a new acquisition time and last activity
    client.force_login(superuser)
    collected_at, last_activity_at = customer.collected_at, customer.last_activity_at
    data = admin_form_data(
        superuser,
        customer,
        collected_at_0="2020-01-01",
        collected_at_1="00:00:00",
        last_activity_at_0="2099-01-01",
        last_activity_at_1="00:00:00",
    )
    # when the change is saved
    response = client.post(_change_url(customer), data)
    # then both keep their recorded values (retention deadlines follow the last activity)
    assert response.status_code == 302
    customer.refresh_from_db()
    assert (customer.collected_at, customer.last_activity_at) == (collected_at, last_activity_at)


@pytest.mark.django_db
@pytest.mark.parametrize("user_name", ["owner", "teammate", "outsider", "privacy_officer", "superuser"])
def test_delete_view_is_refused_to_everyone(client, request, customer, user_name):
    # given any user, the team lead and the superuser included (erasure goes through a service)
    client.force_login(request.getfixturevalue(user_name))
    url = reverse("admin:crm_customer_delete", args=[customer.pk])
    # when they open the delete page or confirm it
    # then both are refused and the customer remains
    assert client.get(url).status_code == 403
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert Customer.objects.filter(pk=customer.pk).exists()


@pytest.mark.django_db
def test_history_page_follows_the_gate(client, owner, outsider, customer):
    # given the customer's change history (Django's admin log) after the owner changed it
    client.force_login(owner)
    client.post(_change_url(customer), admin_form_data(owner, customer, collection_channel="store_pos"))
    url = reverse("admin:crm_customer_history", args=[customer.pk])

    # when the owner opens it, then it shows the change without personal values
    own = client.get(url)
    html = own.content.decode()
    assert own.status_code == 200
    assert "取得チャネル" in html  # the changed field is named
    assert "taro.yamada" not in html
    assert "山田" not in html

    # when an outsider opens it, then they are sent away
    client.force_login(outsider)
    response = client.get(url)
    assert response.status_code == 302
    assert response.url == reverse("admin:index")


# --- the API's statement: the gate compiled once per shape ------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["view", "change"])
@pytest.mark.parametrize(
    "user_name",
    ["owner", "teammate", "outsider", "privacy_officer", "support_agent", "security_user", "superuser"],
)
def test_customer_ref_statement_is_the_gates_own_compilation(
    request, customer, foreign_customer, user_name, action
):
    # given a customer of each team with the same external id, and one of the standing users (after another
    # user of another shape has had the statement compiled for them)
    from crm.selectors import customer_ref, customer_ref_query, customer_ref_queryset

    Customer.objects.filter(pk__in=[customer.pk, foreign_customer.pk]).update(external_id="REF-1")
    customer_ref_query(user=request.getfixturevalue("outsider"), team_id=0, external_id="x", action=action)
    user = type(request.getfixturevalue(user_name)).objects.get(
        username=request.getfixturevalue(user_name).username
    )

    # when customer_ref's statement is asked for each team
    for team_id, target in ((customer.team_id, customer), (foreign_customer.team_id, foreign_customer)):
        query = customer_ref_query(user=user, team_id=team_id, external_id="REF-1", action=action)
        fresh = customer_ref_queryset(user=user, team_id=team_id, external_id="REF-1", action=action)
        expected = target if fresh.exists() else None
        # then it is exactly Django's compilation of the gate's queryset for this user (or nothing, when the
        # user may reach no customer), and finds the customer exactly when the gate does
        if query is None:
            assert expected is None
            continue
        sql, params = fresh.query.sql_with_params()
        assert query == (sql, list(params))
        found = customer_ref(user=user, team_id=team_id, external_id="REF-1", action=action)
        assert (found.pk if found else None) == (expected.pk if expected else None)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("user_name", "status"), [("privacy_officer", 200), ("owner", 403), ("support_agent", 403)]
)
def test_only_the_privacy_officer_looks_up_users_for_a_membership(client, request, user_name, status):
    # given the membership form's user lookup (raw_id_fields opens the user list as a popup)
    client.force_login(request.getfixturevalue(user_name))
    # when it is opened
    response = client.get("/admin/auth/user/?_to_field=id&_popup=1")
    # then the privacy officer, who manages memberships, gets the list; others are refused
    assert response.status_code == status
