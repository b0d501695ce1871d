"""The data map in a real Chromium: the graph is drawn (every system, recipient and flow) with no console
error and no CSP violation, and the RoPA and dictionary downloads open (issue #16)."""

from __future__ import annotations

from typing import Any

import pytest

from consent.models import Purpose
from consent.provision.demo import seed_provision
from consent.provision.models import DataFlow, DataSystem, Recipient
from consent.services import purpose_create
from crm.permissions import ROLE_PRIVACY
from tests.e2e.conftest import TRANSACTIONAL_DB, log_in
from tests.factories import UserFactory

pytestmark = [pytest.mark.e2e, TRANSACTIONAL_DB]


# The purposes the demo's flows name (code → category, basis): a flushed test database has lost those of
# the data migration.
DEMO_PURPOSES = {
    "customer_management": "contract",
    "marketing_email": "consent",
    "analytics": "legitimate_interest",
    "third_party_provision": "consent",
    "cross_border_transfer": "consent",
}


@pytest.fixture
def officer(db: Any) -> Any:
    user = UserFactory(username="officer", roles=[ROLE_PRIVACY])
    for code, basis in DEMO_PURPOSES.items():
        if not Purpose.objects.filter(code=code).exists():
            purpose_create(
                code=code,
                category=code,
                legal_basis=basis,
                title_ja=code,
                title_en=code,
                description_ja=code,
                description_en=code,
            )
    seed_provision(actor=user)
    assert DataFlow.objects.count() == 6
    return user


def _console_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def test_the_data_map_draws_every_node_and_flow(live_server, new_page, officer):
    page = new_page()
    errors = _console_errors(page)
    log_in(page, live_server.url, "officer")
    page.goto(f"{live_server.url}/admin/consent/datasystem/map/")
    box = page.locator("#data-map[data-state=drawn]")
    box.wait_for()
    assert int(box.get_attribute("data-nodes")) == DataSystem.objects.count() + Recipient.objects.count()
    assert int(box.get_attribute("data-edges")) == DataFlow.objects.count()
    assert page.locator("#data-map canvas").count() > 0
    # the PNG button downloads cytoscape's image of the graph
    with page.expect_download() as download:
        page.click("#data-map-png")
    assert download.value.suggested_filename == "data-map.png"
    assert errors == []


def test_the_map_stays_usable_at_two_hundred_nodes(live_server, new_page, officer):
    # given 200 recipients, each with a flow from the CRM
    crm = DataSystem.objects.get(is_this_crm=True)
    purpose = DataFlow.objects.first().purpose
    extra = 200 - DataSystem.objects.count() - Recipient.objects.count()
    recipients = Recipient.objects.bulk_create(
        [Recipient(name=f"委託先{i:03d}", kind="processor", country="JP") for i in range(extra)]
    )
    DataFlow.objects.bulk_create(
        [DataFlow(source=crm, target_recipient=r, purpose=purpose, frequency="daily") for r in recipients]
    )
    page = new_page()
    errors = _console_errors(page)
    log_in(page, live_server.url, "officer")
    page.goto(f"{live_server.url}/admin/consent/datasystem/map/")
    box = page.locator("#data-map[data-state=drawn]")
    box.wait_for(timeout=10_000)
    assert int(box.get_attribute("data-nodes")) == 200
    assert errors == []


def test_the_ropa_and_dictionary_downloads_open(live_server, new_page, officer):
    page = new_page()
    log_in(page, live_server.url, "officer")
    page.goto(f"{live_server.url}/admin/consent/datasystem/ropa/")
    assert page.locator("h1").inner_text() == "処理活動の記録（GDPR第30条）"
    with page.expect_download() as ropa:
        page.click("text=CSVで保存")
    assert ropa.value.suggested_filename == "ropa.csv"
    assert "purpose" in open(ropa.value.path(), encoding="utf-8-sig").readline()
    page.goto(f"{live_server.url}/admin/consent/datasystem/dictionary/")
    assert page.locator("#dictionary tbody tr").count() > 50
    with page.expect_download() as dictionary:
        page.click("#dictionary-search >> text=CSVで保存")
    assert dictionary.value.suggested_filename == "data-dictionary.csv"
    assert "crm.Customer" in open(dictionary.value.path(), encoding="utf-8-sig").read()
    with page.expect_download() as svg:
        page.goto(f"{live_server.url}/admin/consent/datasystem/map/")
        page.click("text=SVG画像で保存")
    assert svg.value.suggested_filename == "data-map.svg"
