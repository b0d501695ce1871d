"""The public privacy page (/privacy/): no login, the APPI Art. 21/32 publication items, English switch."""

from __future__ import annotations

import pytest
from django.conf import settings

from consent import services
from consent.models import Purpose
from tests.consent.conftest import purpose_revised

pytestmark = pytest.mark.django_db


def test_anyone_can_read_the_published_items_in_japanese(client):
    # given no login
    # when the page is opened
    response = client.get("/privacy/")
    # then it lists the company, every published purpose, the request procedure, security and contact
    body = response.content.decode()
    assert response.status_code == 200
    for value in settings.CRM_COMPANY.values():
        assert value in body
    for purpose in Purpose.objects.select_related("current_version"):
        assert purpose.current_version.title_ja in body
    assert "開示等の請求の手続" in body
    assert "安全管理のために講じた措置" in body
    assert "法第32条" in body


def test_the_english_switch_shows_the_english_texts(client):
    # given the English switch
    # when the page is opened with it
    body = client.get("/privacy/?lang=en").content.decode()
    # then the English wording is shown, not the Japanese
    marketing = Purpose.objects.get(code="marketing_email").current_version
    assert "Privacy notice" in body
    assert marketing.title_en in body
    assert marketing.title_ja not in body
    assert 'lang="en"' in body


def test_an_unpublished_purpose_is_not_listed(client):
    # given a purpose taken off publication
    purpose = Purpose.objects.get(code="cookies_advertising")
    services.purpose_update_settings(purpose=purpose, is_published=False)
    # when the page is opened
    body = client.get("/privacy/").content.decode()
    # then it is absent, and its history page is not found
    assert purpose.current_version.title_ja not in body
    assert client.get("/privacy/purposes/cookies_advertising/").status_code == 404


def test_old_versions_stay_readable_on_the_history_page(client):
    # given a purpose revised once
    purpose = Purpose.objects.get(code="marketing_email")
    v1 = purpose.current_version
    purpose_revised(purpose, title_ja="メール配信（改定）")
    # when the main page and the history page are read
    main = client.get("/privacy/").content.decode()
    history = client.get("/privacy/purposes/marketing_email/").content.decode()
    # then the main page shows the new title, and the history shows both versions with their hashes
    assert "メール配信（改定）" in main and v1.title_ja not in main
    assert "メール配信（改定）" in history and v1.title_ja in history
    assert v1.text_hash in history


def test_the_page_refuses_writes(client):
    # given the public page
    # when something is posted to it
    # then it is refused
    assert client.post("/privacy/").status_code == 405


def _purpose_block(body: str, code: str) -> str:
    start = body.index(f'<dt id="{code}">')
    return body[start : body.index("</dd>", start)]


@pytest.mark.parametrize(
    ("lang", "code", "shown", "not_shown"),
    [
        (
            "ja",
            "marketing_email",
            ["同意の撤回（GDPR第7条3項）", "第21条2項・3項", "法第35条"],
            ["異議の申出"],
        ),
        ("ja", "analytics", ["異議の申出（GDPR第21条1項）", "法第35条"], ["同意の撤回"]),
        ("ja", "customer_management", ["利用停止等の請求（法第35条）"], ["異議", "撤回"]),
        ("en", "analytics", ["Object (GDPR Art. 21(1))", "APPI Art. 35"], ["Withdraw"]),
    ],
)
def test_each_purpose_says_what_the_person_can_do_by_its_basis(client, lang, code, shown, not_shown):
    # given the published purposes (consent, legitimate interest, contract)
    # when the page is opened
    block = _purpose_block(client.get(f"/privacy/?lang={lang}").content.decode(), code)
    # then each purpose lists the person's options for its basis, with the article, and no other
    for text in shown:
        assert text in block
    for text in not_shown:
        assert text not in block
