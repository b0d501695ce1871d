"""Exact search and the million-row changelist: what it queries, not how fast (timings live in bench/)."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm import paginators
from crm.admin.customers import CustomerAdmin
from crm.models import Customer
from crm.paginators import EstimatedCountPaginator
from crm.search_token import SEARCH_TOKEN_VAR, open_search, seal_search
from crm.selectors import customer_list, customer_search_counted, customer_search_q
from tests.factories import CustomerFactory
from tests.services import without_audit_id_reservation

CHANGELIST = "/admin/crm/customer/"


def _counts(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]


def _page_queries(ctx: CaptureQueriesContext) -> list[str]:
    """The changelist's page query: the customer rows with their listed (encrypted) columns."""
    return [
        q["sql"]
        for q in ctx.captured_queries
        if 'FROM "crm_customer"' in q["sql"]
        and '"crm_customer"."family_name"' in q["sql"]
        and "COUNT(" not in q["sql"].upper()
    ]


@pytest.mark.django_db
def test_unfiltered_count_reads_the_planner_estimate_instead_of_counting(customer, monkeypatch):
    # given a table the planner believes holds two million rows
    monkeypatch.setattr(paginators, "table_estimate", lambda using, table: 2_000_000)
    paginator = EstimatedCountPaginator(Customer.objects.order_by("-id"), 50)
    # when the changelist asks for the count
    with CaptureQueriesContext(connection) as ctx:
        count = paginator.count
    # then the estimate is used and no COUNT runs
    assert count == 2_000_000
    assert _counts(ctx) == []
    assert paginator.num_pages == 40_000


@pytest.mark.django_db
def test_filtered_count_is_exact_below_the_cap(team, other_team):
    # given three customers of one team and one of another
    CustomerFactory.create_batch(3, team=team)
    CustomerFactory(team=other_team)
    # when counting the team's customers
    paginator = EstimatedCountPaginator(Customer.objects.filter(team=team).order_by("-id"), 2)
    # then the count is exact
    assert paginator.count == 3
    assert paginator.num_pages == 2


@pytest.mark.django_db
def test_filtered_count_stops_at_the_cap_and_estimates_beyond(team, monkeypatch):
    # given more matching rows than the cap
    monkeypatch.setattr(paginators, "CAP", 2)
    CustomerFactory.create_batch(4, team=team)
    paginator = EstimatedCountPaginator(Customer.objects.filter(team=team).order_by("-id"), 50)
    # when counting
    with CaptureQueriesContext(connection) as ctx:
        count = paginator.count
    # then the count ran on at most CAP+1 rows and the answer says "more than the cap"
    assert count >= 3
    assert any("LIMIT 3" in sql for sql in _counts(ctx))


@pytest.mark.django_db
def test_a_large_filtered_estimate_is_taken_without_counting(team, monkeypatch):
    # given a filter the planner estimates at 200,000 rows (a staff member's whole team)
    monkeypatch.setattr(paginators, "query_estimate", lambda qs: 200_000)
    CustomerFactory.create_batch(2, team=team)
    paginator = EstimatedCountPaginator(Customer.objects.filter(team=team).order_by("-id"), 50)
    # when counting
    with CaptureQueriesContext(connection) as ctx:
        count = paginator.count
    # then the estimate stands and no COUNT ran
    assert count == 200_000
    assert _counts(ctx) == []


@pytest.mark.django_db
def test_a_search_result_is_counted_before_the_planner_is_asked(team, monkeypatch):
    # given a paginator over a search result (few rows) and a planner that would say 200,000
    asked = []
    monkeypatch.setattr(paginators, "query_estimate", lambda qs: asked.append(1) or 200_000)
    CustomerFactory.create_batch(3, team=team)
    paginator = EstimatedCountPaginator(Customer.objects.filter(team=team).order_by("-id"), 2)
    paginator.count_first = True
    # when counting, then the count is exact and the planner was never asked
    assert paginator.count == 3
    assert asked == []


@pytest.mark.django_db
def test_estimates_are_kept_for_a_while_and_exact_counts_never(team, monkeypatch, settings):
    # given a planner that answers 200,000 for the team filter, and two customers of the team
    asked = []
    monkeypatch.setattr(paginators, "query_estimate", lambda qs: asked.append(1) or 200_000)
    CustomerFactory.create_batch(2, team=team)

    def count():
        return EstimatedCountPaginator(Customer.objects.filter(team=team).order_by("-id"), 50).count

    # when the same list is counted twice, then the planner is asked once
    assert count() == count() == 200_000
    assert len(asked) == 1
    # and once the estimate is older than ADMIN_ESTIMATE_CACHE_SECONDS it is asked again
    settings.ADMIN_ESTIMATE_CACHE_SECONDS = 0
    assert count() == 200_000
    assert len(asked) == 2
    # an exact count (small estimate) is counted every time, never kept
    settings.ADMIN_ESTIMATE_CACHE_SECONDS = 60
    monkeypatch.setattr(paginators, "query_estimate", lambda qs: 5)
    other = Customer.objects.filter(team=team, status=Customer.Status.ACTIVE).order_by("-id")
    assert EstimatedCountPaginator(other, 50).count == 2
    CustomerFactory(team=team)
    assert EstimatedCountPaginator(other, 50).count == 3


@pytest.mark.django_db
def test_a_short_first_page_corrects_an_estimate_that_was_too_high(client, team, owner, monkeypatch):
    # given a team of three customers and a planner that (wrongly) estimates 200,000 for the filter
    monkeypatch.setattr(paginators, "query_estimate", lambda qs: 200_000)
    CustomerFactory.create_batch(3, team=team)
    client.force_login(owner)
    # when the team member opens the changelist
    response = client.get("/admin/crm/customer/")
    # then the count shown is the three rows on the page, with no page links to empty pages
    cl = response.context["cl"]
    assert len(cl.result_list) == 3
    assert cl.result_count == 3
    assert cl.paginator.count == 3
    assert not cl.multi_page
    assert "200,000" not in response.content.decode() and "200000" not in response.content.decode()


@pytest.mark.django_db
def test_slow_count_is_cancelled_and_replaced_by_the_estimate(team, settings):
    # given a count that would take longer than the admin's count timeout
    settings.ADMIN_COUNT_TIMEOUT_MS = 20
    CustomerFactory.create_batch(3, team=team)
    slow = Customer.objects.filter(team=team).extra(where=["pg_sleep(0.2) IS NOT NULL"])
    # when the paginator counts it
    count = EstimatedCountPaginator(slow.order_by("-id"), 50).count
    # then the statement was cancelled, the planner's estimate stands in, and the connection still works
    assert count >= 1
    assert Customer.objects.filter(team=team).count() == 3
    with connection.cursor() as cur:
        cur.execute("SHOW statement_timeout")
        assert cur.fetchone()[0] == "0"  # SET LOCAL did not leak out of its savepoint


@pytest.mark.django_db
def test_a_count_that_finishes_leaves_no_timeout_behind_in_an_outer_transaction(team):
    # given a filtered list counted exactly (below the cap) inside an outer transaction (the test's own, as
    # an atomic caller's would be)
    CustomerFactory.create_batch(3, team=team)
    with connection.cursor() as cur:
        cur.execute("SHOW statement_timeout")
        before = cur.fetchone()[0]
    # when the paginator counts it
    count = EstimatedCountPaginator(Customer.objects.filter(team=team).order_by("-id"), 50).count
    # then the count is exact and the short count timeout did not outlive it (a released savepoint keeps
    # SET LOCAL: every later statement of the transaction was cut at the count's timeout)
    assert count == 3
    with connection.cursor() as cur:
        cur.execute("SHOW statement_timeout")
        assert cur.fetchone()[0] == before


@pytest.mark.django_db
def test_restrict_spells_out_team_ids_for_the_planner(customer, other_team, owner, outsider, privacy_officer):
    # given a customer per team, a team member of each and a privacy officer who sees all teams
    foreign_customer = CustomerFactory(team=other_team, member_no="M900000001")

    # when each asks the gate, without and with the team ids read for the request (as the admin does)
    from crm.permissions import remember_team_ids

    subquery = str(Customer.objects.restrict(owner, "view").query)
    remember_team_ids(owner)
    sql = str(Customer.objects.restrict(owner, "view").query)
    # then for the request's user a team member's scope is a literal list of team ids (which the planner can
    # estimate), otherwise the same rule as a subquery over the permission tables; both give the same rows …
    assert f'"crm_customer"."team_id" IN ({customer.team_id})' in sql
    assert "crm_teamuserobjectpermission" in subquery and "crm_teamuserobjectpermission" not in sql
    assert list(Customer.objects.restrict(owner, "view")) == [customer]
    assert list(Customer.objects.restrict(outsider, "view")) == [foreign_customer]
    # … and a user who sees every team gets no condition at all
    assert "WHERE" not in str(Customer.objects.restrict(privacy_officer, "view").query)


@pytest.mark.django_db
def test_search_finds_the_matches_within_the_scope_and_counts_them(customer, other_team, owner, outsider):
    # given the same e-mail in two teams
    other = CustomerFactory(team=other_team, member_no="M900000002", email="Taro.Yamada@Example.com")

    # when the owner and the outsider search the shared e-mail through their own scopes
    term = "taro.yamada@example.com"
    found, count = customer_search_counted(Customer.objects.restrict(owner, "view"), term)
    theirs, their_count = customer_search_counted(Customer.objects.restrict(outsider, "view"), term)

    # then each finds only their team's customer: the matches were looked up through the scope, so the id
    # array handed to the list's query holds only those, and their number is the count
    assert list(found) == [customer] and count == 1
    assert list(theirs) == [other] and their_count == 1
    sql, params = found.query.sql_with_params()
    assert "= ANY(" in sql and next(p for p in params if isinstance(p, list)) == [customer.pk]
    assert "team_id" in sql  # the list's query keeps the scope too


@pytest.mark.django_db
def test_a_search_with_more_matches_than_a_page_is_counted_by_the_search_not_by_a_count(client, owner, team):
    # given 53 customers of the owner's team with the same name (more than a page)
    per_page = CustomerAdmin.list_per_page
    assert per_page < 53
    CustomerFactory.create_batch(53, team=team, family_name="鈴木", given_name="一郎")
    client.force_login(owner)
    url = f"{CHANGELIST}?q=" + quote("鈴木 一郎")
    client.get(url)  # warm per-process caches

    # when the owner searches the name
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)

    # then the list says exactly 53, on more than one page, and no statement counted them again
    assert response.status_code == 200
    page = response.content.decode()
    assert "53" in page and page.count("顧客 #") >= per_page
    assert not [q for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]
    assert response.context["cl"].result_count == 53 and response.context["cl"].multi_page
    # and with the filters' facet counts shown (each facet asks the search again without its filter), too
    faceted = client.get(url + "&_facets=1")
    assert faceted.status_code == 200 and faceted.context["cl"].result_count == 53


@pytest.mark.django_db
def test_search_q_uses_only_indexed_equality(customer):
    # given a search term in every supported form
    # when the selector's condition is compiled
    sql = str(Customer.objects.filter(customer_search_q("taro.yamada@example.com")).query)
    # then it is equality on blind indexes / keys, never a LIKE over the table
    assert "LIKE" not in sql.upper()
    assert "email_bidx" in sql


@pytest.mark.django_db
def test_search_finds_by_hiragana_kana_and_refuses_an_outsider(customer, owner, outsider):
    # given the standing customer ヤマダ タロウ of the owner's team
    # when the owner and an outsider search by the name in hiragana
    mine = customer_list(user=owner, search="やまだ たろう")
    theirs = customer_list(user=outsider, search="やまだ たろう")
    # then only the owner finds the customer
    assert list(mine) == [customer]
    assert list(theirs) == []


@pytest.mark.django_db
def test_changelist_queries_do_not_grow_with_the_rows_on_the_page(client, owner, team):
    # given a team with 2 customers, then with 12
    client.force_login(owner)
    CustomerFactory.create_batch(2, team=team)
    client.get(CHANGELIST)  # warm per-process caches (content types)
    with CaptureQueriesContext(connection) as few:
        assert client.get(CHANGELIST).status_code == 200
    CustomerFactory.create_batch(10, team=team)
    # when the changelist is shown again
    with CaptureQueriesContext(connection) as many:
        response = client.get(CHANGELIST)
    # then it shows every row with the same number of queries (no per-row team or permission lookups)
    assert response.status_code == 200
    assert response.content.decode().count("顧客 #") >= 12
    assert len(without_audit_id_reservation(many)) == len(without_audit_id_reservation(few))


@pytest.mark.django_db
def test_changelist_loads_only_the_listed_columns(client, privacy_officer, customer):
    # given a privacy officer (sees all teams)
    client.force_login(privacy_officer)
    # when the changelist is shown
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(CHANGELIST).status_code == 200
    # then the page query selects the listed columns, not the address, notes or birth date
    page = _page_queries(ctx)
    assert page
    assert all('"address"' not in sql and '"notes"' not in sql and '"birth_date"' not in sql for sql in page)


@pytest.mark.django_db
def test_changelist_ignores_sorting_by_an_unindexed_column(client, privacy_officer, customer):
    # given the changelist columns: 0 __str__, …, 6 team, 7 status, 8 last activity
    client.force_login(privacy_officer)
    # when someone asks to sort by team (column 6) and by last activity (column 8)
    with CaptureQueriesContext(connection) as by_team:
        assert client.get(CHANGELIST, {"o": "6"}).status_code == 200
    with CaptureQueriesContext(connection) as by_activity:
        assert client.get(CHANGELIST, {"o": "-8"}).status_code == 200
    # then the team sort is ignored (no ORDER BY over the join) and the indexed activity sort is honoured
    team_page = " ".join(_page_queries(by_team))
    activity_page = " ".join(_page_queries(by_activity))
    assert 'ORDER BY "crm_customer"."id" DESC' in team_page
    assert '"crm_team"."code"' not in team_page.partition("ORDER BY")[2]
    assert 'ORDER BY "crm_customer"."last_activity_at" DESC' in activity_page


@pytest.mark.django_db
def test_changelist_search_is_refused_outside_the_team(client, outsider, customer):
    # given an outsider, staff of another team
    client.force_login(outsider)
    # when they search the changelist for the customer's exact e-mail
    response = client.get(CHANGELIST, {"q": "taro.yamada@example.com"})
    # then the page shows no customer
    assert response.status_code == 200
    assert f"顧客 #{customer.pk}<" not in response.content.decode()


# --- the search term is kept out of URLs (crm.search_token) ---------------------------------------------


def _hrefs_and_actions(html: str) -> str:
    return " ".join(unquote(unquote(m)) for m in re.findall(r'(?:href|action)="([^"]*)"', html))


@pytest.mark.django_db
def test_the_search_form_posts_and_the_list_is_shown_at_an_encrypted_token(client, teammate, customer):
    # given a teammate on the customer list, filtered by status
    client.force_login(teammate)
    # when they search by the customer's e-mail address through the form (it posts)
    response = client.post(CHANGELIST, {"q": " Taro.Yamada@Example.com ", "status__exact": "active"})
    # then they are sent to the list at ?qt=<token>, the filter kept, the term in no spelling in the address
    assert response.status_code == 302
    location = unquote(response["Location"])
    assert location.startswith(f"{CHANGELIST}?") and "status__exact=active" in location
    assert "yamada" not in location.lower() and "q=" not in location.replace("qt=", "")
    token = dict(parse_qsl(urlsplit(response["Location"]).query))[SEARCH_TOKEN_VAR]
    assert open_search(token) == "Taro.Yamada@Example.com"
    # and that page finds the customer, with links (change page, filters, paging) carrying the token only
    page = client.get(response["Location"])
    html = page.content.decode()
    assert page.status_code == 200 and f"顧客 #{customer.pk}<" in html
    [change_link] = re.findall(rf'href="(/admin/crm/customer/{customer.pk}/change/[^"]*)"', html)
    assert "_changelist_filters=" in change_link and f"{SEARCH_TOKEN_VAR}=" in unquote(change_link)
    assert "yamada" not in _hrefs_and_actions(html).lower()
    # and the same term twice gives two different tokens (nothing to compare in a log)
    again = client.post(CHANGELIST, {"q": "Taro.Yamada@Example.com"})
    assert dict(parse_qsl(urlsplit(again["Location"]).query))[SEARCH_TOKEN_VAR] != token


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["expired", "tampered", "foreign"])
def test_an_expired_or_damaged_search_token_searches_for_nothing_and_says_so(
    client, teammate, customer, token
):
    # given a token made nine hours ago, one with a changed character, and one that is not ours
    made = {
        "expired": seal_search("taro.yamada@example.com", now=time.time() - 9 * 3600),
        "tampered": seal_search("taro.yamada@example.com")[:-6] + "AAAAAA",
        "foreign": "bm90LWEtdG9rZW4=",
    }[token]
    client.force_login(teammate)
    # when the list is opened with it
    response = client.get(CHANGELIST, {SEARCH_TOKEN_VAR: made}, follow=True)
    # then it says the search has to be made again, and no search ran (the box is empty)
    html = response.content.decode()
    assert response.status_code == 200
    assert "検索条件の有効期限が切れたか、無効です" in html
    assert 'id="searchbar" autocomplete="off"' in html and 'value="taro' not in html


@pytest.mark.django_db
def test_a_search_post_by_a_user_without_the_list_is_refused(client, security_user):
    # given a security user (no customer permission)
    client.force_login(security_user)
    # when they post a search, then it is refused before any token is made
    assert client.post(CHANGELIST, {"q": "taro.yamada@example.com"}).status_code == 403


@pytest.mark.django_db
def test_an_overlong_search_is_refused_with_a_message(client, teammate):
    client.force_login(teammate)
    response = client.post(CHANGELIST, {"q": "あ" * 201}, follow=True)
    assert "検索語は200文字以内で入力してください" in response.content.decode()
    assert SEARCH_TOKEN_VAR not in response.redirect_chain[0][0]
