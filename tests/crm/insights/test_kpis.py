"""The KPI page's indicators on worked data: JST months, one figure per month, the page for whom it is."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from crm import services as crm_services
from crm.insights import hooks, rules, selectors, services
from crm.insights.models import CampaignResult, MarketingSpend
from crm.models import Customer
from tests.crm.insights.scores import clv_fit_with
from tests.factories import CustomerFactory, UserFactory

JST = ZoneInfo("Asia/Tokyo")
JAN, FEB, MAR = dt.date(2026, 1, 1), dt.date(2026, 2, 1), dt.date(2026, 3, 1)


def at(y: int, m: int, d: int, h: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, minute, tzinfo=JST)


def _buy(customer: Customer, when: dt.datetime, amount: int, n: list[int] = [0]) -> None:  # noqa: B006
    n[0] += 1
    crm_services.purchase_record(
        team=customer.team,
        customer=customer,
        order_no=f"KPI-{n[0]}-{customer.pk}",
        amount=amount,
        channel="web_form",
        purchased_at=when,
    )


@pytest.fixture
def worked(team):
    """Four customers: A, B acquired in January, C in February, D at 00:30 JST on 1 February (15:30 UTC on
    31 January: a February customer); D leaves in March. Purchases: A 1,000 (Jan) and 3,000 (Feb), B 2,000
    (Feb), C 4,000 (Mar). Spend 20,000 in January (two channels), 30,000 in February. One campaign in
    February: 100 delivered, 40 opened, 10 clicked."""
    a = CustomerFactory(team=team, collected_at=at(2026, 1, 5))
    b = CustomerFactory(team=team, collected_at=at(2026, 1, 20), email=a.email)  # same address: duplicate
    c = CustomerFactory(team=team, collected_at=at(2026, 2, 10), birth_date=dt.date(1990, 4, 1))
    d = CustomerFactory(team=team, collected_at=dt.datetime(2026, 1, 31, 15, 30, tzinfo=dt.UTC))
    Customer.objects.filter(pk=d.pk).update(status=Customer.Status.CLOSED, closed_at=at(2026, 3, 15))
    _buy(a, at(2026, 1, 10), 1000)
    _buy(a, at(2026, 2, 10), 3000)
    _buy(b, at(2026, 2, 11), 2000)
    _buy(c, at(2026, 3, 1, 0, 5), 4000)
    MarketingSpend.objects.create(channel="web_form", month=JAN, amount=Decimal(12000))
    MarketingSpend.objects.create(channel="app", month=JAN, amount=Decimal(8000))
    MarketingSpend.objects.create(channel="web_form", month=FEB, amount=Decimal(30000))
    CampaignResult.objects.create(
        campaign_code="feb-news", sent_on=dt.date(2026, 2, 3), sent=110, delivered=100, opened=40, clicked=10
    )
    return a, b, c, d


@pytest.mark.django_db
def test_indicators_on_worked_data(worked):
    # when the indicators are computed for January to March 2026
    values = selectors.kpi_months(months=[JAN, FEB, MAR], refresh=True)
    # then CAC is the month's spend over the month's new customers (D is February's: JST)
    assert [values[m]["new_customers"] for m in (JAN, FEB, MAR)] == [2, 2, 0]
    assert [values[m]["cac"] for m in (JAN, FEB, MAR)] == [10000.0, 15000.0, None]
    # LTV: revenue so far over customers who bought so far (1,000/1; 6,000/2; 10,000/3)
    assert [values[m]["ltv"] for m in (JAN, FEB, MAR)] == [1000.0, 3000.0, pytest.approx(3333.333333)]
    # repeat rate: of February's buyers A and B, A had bought before
    assert [values[m]["repeat"] for m in (JAN, FEB, MAR)] == [0.0, 50.0, 0.0]
    # churn: D left in March out of four on the books on 1 March; January had nobody at its start
    assert [values[m]["churn"] for m in (JAN, FEB, MAR)] == [None, 0.0, 25.0]
    # e-mail rates of February's campaign, by delivered
    assert (values[FEB]["open_rate"], values[FEB]["click_rate"]) == (40.0, 10.0)
    assert values[JAN]["open_rate"] is None
    # data quality per acquisition month: four of five contact fields filled (no birth date) but C's five;
    # A and B share an e-mail address; nobody in March's cohort
    assert values[JAN]["completeness"] == 80.0
    assert values[FEB]["completeness"] == 90.0
    assert values[JAN]["duplicates"] == 100.0 and values[FEB]["duplicates"] == 0.0
    assert values[MAR]["completeness"] is None


@pytest.mark.django_db
def test_months_are_cached_and_refresh_recomputes(worked):
    # given the indicators computed once
    selectors.kpi_months(months=[JAN, FEB], refresh=True)
    # when spend changes and the page is read again without refreshing, then the cached month is served
    MarketingSpend.objects.filter(month=FEB).update(amount=Decimal(60000))
    assert selectors.kpi_months(months=[JAN, FEB])[FEB]["cac"] == 15000.0
    # and refreshing recomputes it
    assert selectors.kpi_months(months=[JAN, FEB], refresh=True)[FEB]["cac"] == 30000.0


def test_pure_formulas_on_worked_examples():
    # given per-month totals, then the formulas divide as documented and leave gaps, not zeros
    assert rules.cac({JAN: Decimal(100)}, {JAN: 0}, [JAN]) == [None]
    assert rules.churn({JAN: 10}, {FEB: 1}, [JAN, FEB]) == [None, 10.0]
    assert rules.months_back(dt.date(2026, 2, 14), 3) == [dt.date(2025, 12, 1), JAN, FEB]
    assert rules.month_of(dt.datetime(2026, 1, 31, 15, 30, tzinfo=dt.UTC)) == FEB


@pytest.mark.django_db
def test_consent_registers_the_opt_in_rate_per_purpose(worked):
    # given the consent app registered its series, and two decisions in February: a grant and a withdrawal
    from consent import services as consent_services
    from consent.models import ConsentEvent

    a, b, _c, _d = worked
    for customer, action in ((a, ConsentEvent.Action.GRANT), (b, ConsentEvent.Action.WITHDRAW)):
        consent_services.consent_record(
            purpose_code="marketing_email",
            action=action,
            method=ConsentEvent.Method.OPT_IN,
            channel=ConsentEvent.Channel.WEB_FORM,
            customer=customer,
            occurred_at=at(2026, 2, 20),
        )
    assert "consent_opt_in" in [s.key for s in hooks.kpi_series()]
    # when the indicators are computed, then the purpose's February rate is one grant in two decisions
    values = selectors.kpi_months(months=[JAN, FEB], refresh=True)
    assert values[FEB]["consent_opt_in:marketing_email"] == 50.0
    assert values[JAN]["consent_opt_in:marketing_email"] is None


SPEND_CSV = "month,channel,amount,note\n2026-01,web_form,12000,\n2026-02,app,5000,展示会\n"


@pytest.mark.django_db
def test_spend_import_is_all_or_nothing_and_idempotent():
    # when a good file is imported twice, then two rows exist, unchanged by the second import
    assert services.marketing_spend_import(data=SPEND_CSV.encode()) == (2, [])
    assert services.marketing_spend_import(data=SPEND_CSV.encode()) == (2, [])
    assert MarketingSpend.objects.count() == 2
    # when a file has a bad line, then nothing of it is written and the line is named
    bad = "month,channel,amount\n2026-03,web_form,100\n2026/04,web_form,100\n2026-05,fax,1\n"
    count, errors = services.marketing_spend_import(data=bad.encode())
    assert count == 0 and [line for line, _m in errors] == [3, 4]
    assert MarketingSpend.objects.count() == 2


@pytest.mark.django_db
def test_campaign_import_refuses_inconsistent_counts():
    good = "campaign_code,sent_on,sent,delivered,opened,clicked\nspring,2026-04-01,100,90,30,5\n"
    assert services.campaign_results_import(data=good.encode()) == (1, [])
    bad = "campaign_code,sent_on,sent,delivered,opened,clicked\nsummer,2026-07-01,100,90,95,5\n"
    count, errors = services.campaign_results_import(data=bad.encode())
    assert count == 0 and errors[0][0] == 2
    assert not CampaignResult.objects.filter(campaign_code="summer").exists()


@pytest.mark.django_db
def test_kpi_page_for_the_privacy_officer_and_refused_to_staff(client, worked, privacy_officer, teammate):
    url = reverse("admin:crm_kpi")
    # given the privacy officer, when they open the page, then it carries the charts' data as JSON
    client.force_login(privacy_officer)
    page = client.get(url)
    assert page.status_code == 200
    assert b'id="kpi-data"' in page.content and b"chart.umd.min.js" in page.content
    # given a staff member without the KPI permission, then the page is refused
    client.force_login(teammate)
    assert client.get(url).status_code == 403


@pytest.mark.django_db
def test_import_page_refused_without_add_permission(client, team):
    # given a user who may only view spend rows, when they post an import, then it is refused
    user = UserFactory(username="viewer")
    user.user_permissions.add(Permission.objects.get(codename="view_marketingspend"))
    client.force_login(user)
    answer = client.post(reverse("admin:crm_marketingspend_import"), {})
    assert answer.status_code == 403


@pytest.mark.django_db
def test_recompute_button_enqueues_the_task_and_beat_runs_it_nightly(
    client, privacy_officer, monkeypatch, django_capture_on_commit_callbacks
):
    from celery import current_app
    from django_celery_beat.models import PeriodicTask

    sent: list[str] = []
    monkeypatch.setattr(current_app, "send_task", lambda name, *a, **kw: sent.append(name))
    client.force_login(privacy_officer)
    # when the privacy officer presses 「再計算する」, then the refresh task is sent and the page comes back
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(reverse("admin:crm_kpi"))
    assert answer.status_code == 302
    assert sent == [services.KPI_REFRESH_TASK]
    # and beat runs the same task every night (migration crm 0021), Japan time
    nightly = PeriodicTask.objects.get(task=services.KPI_REFRESH_TASK)
    assert (nightly.crontab.hour, nightly.crontab.minute, str(nightly.crontab.timezone)) == (
        "2",
        "30",
        "Asia/Tokyo",
    )


@pytest.mark.django_db
def test_import_page_refuses_a_file_that_is_not_utf8(client, privacy_officer):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(privacy_officer)
    upload = SimpleUploadedFile(
        "spend.csv", "month,channel,amount\n2026-01,web_form,1\n".encode("shift_jis") + b"\xff"
    )
    answer = client.post(reverse("admin:crm_marketingspend_import"), {"file": upload})
    # then the form says so on the page and nothing is imported
    assert answer.status_code == 200
    assert "UTF-8" in answer.content.decode()
    assert not MarketingSpend.objects.exists()


@pytest.mark.django_db
def test_page_shows_the_latest_clv_fit_beside_the_simple_ltv(client, privacy_officer, team):
    from django.core.cache import cache

    # given a CLV fit scoring two customers at 10,000 and 30,000 yen
    fit = clv_fit_with(
        [(CustomerFactory(team=team), clv, 0.5) for clv in (10000, 30000)],
        calibration_end=dt.date(2026, 6, 30),
    )
    cache.delete(f"{selectors.CACHE_PREFIX}:clv:{fit.pk}")
    # then the summary is their mean, and the page says it with the fit's data date
    assert selectors.clv_summary()["mean_clv"] == 20000
    client.force_login(privacy_officer)
    page = client.get(reverse("admin:crm_kpi")).content.decode()
    assert "2026-06-30" in page and "20,000" in page


@pytest.mark.django_db
def test_an_import_refreshes_the_cached_months_after_commit(monkeypatch, django_capture_on_commit_callbacks):
    from celery import current_app

    sent: list[str] = []
    monkeypatch.setattr(current_app, "send_task", lambda name, *a, **kw: sent.append(name))
    with django_capture_on_commit_callbacks(execute=True):
        services.marketing_spend_import(data=SPEND_CSV.encode())
    assert sent == [services.KPI_REFRESH_TASK]
