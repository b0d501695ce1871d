"""The customer admin in a real headless Chromium: Japanese login, exact search, masking, refusal."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from tests.e2e.conftest import TRANSACTIONAL_DB, log_in
from tests.factories import STANDING_CUSTOMER_PHONE_AND_NAMES

pytestmark = [pytest.mark.e2e, TRANSACTIONAL_DB]

# The standing `customer` fixture's values as stored (e-mail lower-cased, phone in E.164) and as entered.
CLEAR_VALUES = [
    "taro.yamada@example.com",
    "Taro.Yamada@Example.com",
    *STANDING_CUSTOMER_PHONE_AND_NAMES,
]


def assert_no_clear_value(text: str) -> None:
    leaked = [value for value in CLEAR_VALUES if value.lower() in text.lower()]
    assert leaked == [], f"personal values in clear on the page: {leaked}"


def test_staff_finds_customer_by_email_and_sees_only_masked_values(live_server, new_page, customer, teammate):
    # given a staff member of the customer's team, without the 'view personal data' permission
    page = new_page()
    # when they open the login page, it is in Japanese
    page.goto(f"{live_server.url}/admin/login/")
    assert page.locator("html").get_attribute("lang") == "ja"
    assert page.locator("#login-form [type=submit]").get_attribute("value") == "ログイン"
    # and they log in, search the changelist by the e-mail address as the customer wrote it
    log_in(page, live_server.url, "teammate")
    page.goto(f"{live_server.url}/admin/crm/customer/")
    page.fill("#searchbar", "Taro.Yamada@Example.com")
    page.press("#searchbar", "Enter")
    page.wait_for_url(re.compile(r".*\?qt=.*"))
    # (the form posted the term: the list's address holds it encrypted, in no spelling in clear)
    assert "yamada" not in unquote(page.url).lower()
    # then exactly that customer is listed, masked
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert_no_clear_value(page.inner_text("#result_list"))
    # when they open it
    rows.first.get_by_role("link", name=f"顧客 #{customer.pk}").click()
    # (the admin keeps the search in `?_changelist_filters=…`, as the token)
    page.wait_for_url(re.compile(rf".*/admin/crm/customer/{customer.pk}/change/.*"))
    assert "qt=" in unquote(page.url) and "yamada" not in unquote(page.url).lower()
    # then the change page shows masked values only, nowhere in the HTML a clear one
    masked_email = page.locator(".field-masked_email .readonly")
    assert masked_email.inner_text().strip() not in ("", "-")
    # and visibly marked as masked (static/crm/admin.css is served and applied)
    assert masked_email.evaluate("e => getComputedStyle(e).borderTopStyle") == "dashed"
    assert page.locator("#id_email").count() == 0
    assert_no_clear_value(page.content())


def test_staff_with_personal_data_permission_sees_clear_values(live_server, new_page, customer, pii_teammate):
    # given a staff member of the same team who holds crm.view_customer_pii
    page = new_page()
    log_in(page, live_server.url, "pii_teammate")
    # when they open the same customer
    page.goto(f"{live_server.url}/admin/crm/customer/{customer.pk}/change/")
    # then the clear values are there
    assert page.input_value("#id_email") == "taro.yamada@example.com"
    assert page.input_value("#id_family_name") == "山田"
    assert page.input_value("#id_given_name") == "太郎"
    assert page.input_value("#id_phone") == "090-1234-5678"  # stored as E.164, written as people do


def test_outsider_typing_the_change_url_gets_nothing(live_server, new_page, customer, outsider):
    # given a staff member of another team
    page = new_page()
    log_in(page, live_server.url, "outsider")
    # when they type the URL of the customer's change page
    page.goto(f"{live_server.url}/admin/crm/customer/{customer.pk}/change/")
    # then they are sent back to the admin index with a message, and no data of the customer is on the page
    assert page.url == f"{live_server.url}/admin/"
    assert "見つかりませんでした" in page.inner_text(".messagelist")
    assert_no_clear_value(page.content())
    # and searching by the e-mail address finds nothing either
    page.goto(f"{live_server.url}/admin/crm/customer/?q=taro.yamada%40example.com")
    assert page.locator("#result_list tbody tr").count() == 0


def test_language_switcher_turns_the_admin_english_and_back(live_server, new_page):
    # given the Japanese login page
    page = new_page()
    page.goto(f"{live_server.url}/admin/login/")
    assert page.inner_text("#site-name") == "顧客管理システム（個人情報保護法・GDPR対応）"
    # when English is chosen in the switcher
    page.click(".crm-language button[value=en]")
    page.wait_for_url(f"{live_server.url}/admin/login/")
    # then the same page comes back in English
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.inner_text("#site-name") == "Customer management (APPI and GDPR compliant)"
    assert page.locator("#login-form [type=submit]").get_attribute("value") == "Log in"
    assert page.locator(".crm-language button[value=en]").is_disabled()
    # when Japanese is chosen again
    page.click(".crm-language button[value=ja]")
    page.wait_for_url(f"{live_server.url}/admin/login/")
    # then it is Japanese again
    assert page.locator("html").get_attribute("lang") == "ja"
    assert page.locator("#login-form [type=submit]").get_attribute("value") == "ログイン"


def test_team_lead_erases_a_customer_from_its_page(live_server, new_page, customer, owner):
    # given the customer's team lead on the customer's page
    from crm.models import Customer

    page = new_page()
    log_in(page, live_server.url, "owner")
    page.goto(f"{live_server.url}/admin/crm/customer/{customer.pk}/change/")
    # when they follow the page's erase action
    page.get_by_role("link", name="消去", exact=True).click()
    page.wait_for_url(f"{live_server.url}/admin/crm/customer/{customer.pk}/erase/")
    # then the confirmation lists what will be removed, without a personal value
    content = page.inner_text("#content")
    assert "消去される項目" in content and "メールアドレス" in content
    assert_no_clear_value(page.content())
    # when they give the ground and confirm
    page.select_option("#id_reason", "request")
    page.click("input[name=confirm]")
    # then they are on the customer list, told it is done, and the customer is gone
    page.wait_for_url(f"{live_server.url}/admin/crm/customer/")
    assert "消去しました" in page.inner_text(".messagelist")
    assert not Customer.objects.filter(pk=customer.pk).exists()
