"""The data map (graph, SVG), the record of processing (GDPR Art. 30) and the data dictionary (issue #16)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.urls import reverse

from consent.models import Purpose
from consent.provision.demo import seed_provision
from consent.provision.models import DataFlow, DataSystem, Recipient
from crm.classification import REGISTRY, DataClass


@pytest.fixture
def demo(officer):
    seed_provision(actor=officer)


def _csv(response):
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(body)))


def test_the_graph_holds_every_flow(client, officer, demo):
    client.force_login(officer)
    graph = json.loads(client.get(reverse("admin:consent_data_map_json")).content)
    # then every system and recipient is a node and every flow an edge between the right two
    nodes = {n["id"] for n in graph["nodes"]}
    assert nodes == {f"s{pk}" for pk in DataSystem.objects.values_list("pk", flat=True)} | {
        f"r{pk}" for pk in Recipient.objects.values_list("pk", flat=True)
    }
    expected = {
        (f"s{f.source_id}", f"s{f.target_system_id}" if f.target_system_id else f"r{f.target_recipient_id}")
        for f in DataFlow.objects.all()
    }
    assert len(expected) == 6
    assert {(e["source"], e["target"]) for e in graph["edges"]} == expected


def test_the_crm_holds_the_classes_of_the_registry(client, officer, demo):
    # given the CRM's system row, which has no categories typed in
    crm = DataSystem.objects.get(is_this_crm=True)
    assert crm.data_categories == []
    client.force_login(officer)
    graph = json.loads(client.get(reverse("admin:consent_data_map_json")).content)
    node = next(n for n in graph["nodes"] if n["id"] == f"s{crm.pk}")
    # then its classes are those some registered field has
    held = {s.data_class for fields in REGISTRY.models.values() for s in fields.values()}
    assert set(node["categories"]) == {c.value for c in held if c != DataClass.NOT_PERSONAL}
    assert DataClass.SPECIAL_CARE.value in node["categories"]


def test_the_map_downloads_as_svg_with_every_flow(client, officer, demo):
    client.force_login(officer)
    response = client.get(reverse("admin:consent_data_map_svg"))
    assert response["Content-Type"] == "image/svg+xml"
    svg = response.content.decode()
    assert svg.startswith("<svg") and svg.count('class="edge"') == DataFlow.objects.count()
    assert "Muster GmbH" in svg


def test_the_map_page_loads_its_script_from_static(client, officer, demo):
    client.force_login(officer)
    html = client.get(reverse("admin:consent_data_map")).content.decode()
    assert "consent/vendor/cytoscape-3.35.0/cytoscape.min.js" in html
    assert "<script>" not in html  # no inline script (CSP)


def test_the_ropa_lists_every_purpose_and_recipient(client, officer, demo):
    client.force_login(officer)
    page = client.get(reverse("admin:consent_ropa")).content.decode()
    rows = _csv(client.get(reverse("admin:consent_ropa_csv")))
    assert rows[0][0] == "purpose"
    for purpose in Purpose.objects.all():
        assert purpose.code in page
        assert any(r[0].startswith(purpose.code) for r in rows[1:])
    recipients_column = " ".join(r[4] for r in rows[1:])
    for recipient in Recipient.objects.all():
        assert recipient.name in page
        assert recipient.name in recipients_column
    # third-country transfers with their safeguards, and the print stylesheet
    transfers = " ".join(r[5] for r in rows[1:])
    assert "Muster GmbH（DE）: 指定国" in transfers and "SCC" in transfers
    assert "consent/ropa.css" in page


def test_the_ropa_is_refused_to_staff(client, teammate):
    client.force_login(teammate)
    assert client.get(reverse("admin:consent_ropa")).status_code == 403
    assert client.get(reverse("admin:consent_data_map_json")).status_code == 403


def test_staff_read_the_data_dictionary(client, teammate):
    # given a staff member with no permission on the data map
    client.force_login(teammate)
    # when they open the dictionary and its CSV
    page = client.get(reverse("admin:consent_data_dictionary"))
    rows = _csv(client.get(reverse("admin:consent_data_dictionary_csv")))
    assert page.status_code == 200
    header, body = rows[0], rows[1:]
    # then every classified field of every model is a row
    assert len(body) == sum(len(fields) for fields in REGISTRY.models.values())
    by_field = {(r[0], r[2]): dict(zip(header, r, strict=True)) for r in body}
    email = by_field[("crm.Customer", "email")]
    assert (email["encrypted"], email["searchable"], email["personal"]) == ("true", "true", "true")
    assert "個人情報保護管理者" in email["clear_to"]
    notes = by_field[("crm.Customer", "notes")]
    assert (notes["encrypted"], notes["searchable"]) == ("true", "false")
    assert by_field[("crm.Customer", "member_no")]["searchable"] == "true"


def test_the_dictionary_page_searches(client, teammate):
    client.force_login(teammate)
    html = client.get(reverse("admin:consent_data_dictionary"), {"q": "email"}).content.decode()
    assert "crm.Customer" in html and "<code>email</code>" in html
    assert "<code>birth_date</code>" not in html


def test_every_admin_page_links_the_dictionary_for_staff(client, teammate):
    client.force_login(teammate)
    html = client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("admin:consent_data_dictionary")}"' in html
