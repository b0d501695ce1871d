"""The classification registry alone says what the retention engine clears, keeps and generalises.

Each test changes a declaration (monkeypatched into the registry for the test only) and checks that erasure,
anonymisation or unlinking follows it with no change to the engine; the last one keeps table names out of the
engine's SQL (they come from the models' metadata).
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest
from django.apps import apps

from crm.classification import REGISTRY, DataClass, FieldSpec, Generalisation
from crm.models import Customer, CustomerEvent, Purchase
from crm.retention import rules, services
from crm.retention.models import LegalHold, RetentionPolicy
from tests.crm.retention.conftest import add_history, jst, set_activity
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

Scope, Action = RetentionPolicy.Scope, RetentionPolicy.Action
CUSTOMER = Customer._meta.label


def _redeclare(monkeypatch, label: str, name: str, **changes) -> None:
    """Change one declaration for this test only (the engine is not touched)."""
    monkeypatch.setitem(
        REGISTRY.models[label], name, dataclasses.replace(REGISTRY.spec(label, name), **changes)
    )


def _anonymise(customer: Customer) -> Customer:
    services.customer_anonymise(customer_ids=[customer.pk], reason="test", actor=None)
    return Customer.objects.get(pk=customer.pk)


def test_a_field_declared_quasi_identifier_is_cleared_by_anonymisation(team, monkeypatch):
    # given the acquisition channel (declared not personal) redeclared as a quasi-identifier
    customer = CustomerFactory(team=team, collection_channel=Customer.Channel.STORE_POS)
    _redeclare(monkeypatch, CUSTOMER, "collection_channel", data_class=DataClass.QUASI)
    # when the customer is anonymised
    after = _anonymise(customer)
    # then the channel is emptied with the other identifiers
    assert after.collection_channel == ""
    assert after.status == Customer.Status.ANONYMISED


def test_a_structured_attribute_declared_free_text_is_cleared_by_anonymisation(team, monkeypatch):
    # given gender (a structured attribute anonymisation keeps) declared free text
    customer = CustomerFactory(team=team, gender="female")
    _redeclare(monkeypatch, CUSTOMER, "gender", free_text=True)
    # when
    after = _anonymise(customer)
    # then it goes like the other free text
    assert after.gender == ""


def test_a_text_attribute_not_declared_free_text_is_kept(team, monkeypatch):
    # given the free-form preferences no longer declared free text (whatever the field type)
    customer = CustomerFactory(team=team, preferences={"newsletter": True})
    _redeclare(monkeypatch, CUSTOMER, "preferences", free_text=False)
    # when
    after = _anonymise(customer)
    # then anonymisation leaves them
    assert after.preferences == {"newsletter": True}


def test_an_unlinked_row_keeps_a_text_attribute_not_declared_free_text(
    customer, privacy_officer, monkeypatch
):
    # given a legal hold that ended, its note no longer declared free text
    (hold,) = services.legal_hold_place(
        customer_ids=[customer.pk], reason="dsar", placed_by=privacy_officer, note="NOTE-KEPT"
    )
    services.legal_hold_release(holds=[hold], released_by=privacy_officer)
    _redeclare(monkeypatch, LegalHold._meta.label, "note", free_text=False)
    # when the customer is erased
    out = services.customer_erase(customer_ids=[customer.pk], reason="test", actor=None)
    # then the hold is unlinked and its note stays as declared
    hold.refresh_from_db()
    assert out.acted == [customer.pk]
    assert (hold.customer_id, hold.note) == (None, "NOTE-KEPT")


def test_an_unlinked_row_loses_a_field_declared_identifier(team, customer, monkeypatch):
    # given a purchase (a tax record) whose channel is redeclared as an identifier outside the tax category
    add_history(customer, purchases=1, events=0)
    _redeclare(monkeypatch, Purchase._meta.label, "channel", data_class=DataClass.QUASI, retention="")
    # when the customer is erased
    services.customer_erase(customer_ids=[customer.pk], reason="test", actor=None)
    # then the purchase survives unlinked, the statutory fields as they were, the channel emptied
    purchase = Purchase.objects.get()
    assert (purchase.customer_id, purchase.channel) == (None, "")
    assert purchase.order_no and purchase.amount


def test_behavioural_anonymisation_clears_what_the_event_declares(team, make_policy, frozen_now, monkeypatch):
    # given events whose source system is redeclared as a quasi-identifier
    customer = set_activity(CustomerFactory(team=team), jst(2020, 1, 1))
    add_history(customer, purchases=0, events=2)
    CustomerEvent.objects.update(source="SRC-1")
    _redeclare(monkeypatch, CustomerEvent._meta.label, "source", data_class=DataClass.QUASI)
    policy = make_policy(scope=Scope.BEHAVIOURAL, action=Action.ANONYMISE)
    # when the behavioural data is anonymised
    services.retention_run_to_completion(run=services.retention_run_start(policy=policy, enqueue=False))
    # then the events are unlinked without their visitor id and without the source
    assert set(CustomerEvent.objects.values_list("customer_id", "visitor_id", "source")) == {(None, "", "")}


def test_without_a_generalisation_the_birth_date_leaves_no_age_band(team, monkeypatch):
    # given the birth date declared with no generalisation
    customer = CustomerFactory(team=team, birth_date=dt.date(1985, 6, 15))
    _redeclare(monkeypatch, CUSTOMER, "birth_date", generalise=None)
    # when
    after = _anonymise(customer)
    # then it is cleared and leaves no trace
    assert (after.birth_date, after.age_band) == (None, "")


def test_a_declared_generalisation_is_applied(team, monkeypatch):
    # given the postal code declared to generalise into the prefecture by a generaliser of this test,
    # and the address declared with no generalisation
    customer = CustomerFactory(team=team, postal_code="100-0001", address="", prefecture="")
    monkeypatch.setitem(rules.GENERALISERS, "test_postal", lambda value, kept, on: "13" if value else kept)
    _redeclare(monkeypatch, CUSTOMER, "address", generalise=None)
    _redeclare(
        monkeypatch, CUSTOMER, "postal_code", generalise=Generalisation(into="prefecture", by="test_postal")
    )
    # when
    after = _anonymise(customer)
    # then the postal code is gone and the prefecture it gave stays
    assert (after.postal_code, after.prefecture) == ("", "13")


def test_pseudonymisation_generalises_what_it_clears(team, monkeypatch):
    # given a customer with a birth date and an address naming a prefecture
    customer = CustomerFactory(team=team, birth_date=dt.date(1990, 1, 1), address="大阪府大阪市北区1-1")
    Customer.objects.filter(pk=customer.pk).update(prefecture="")
    # when pseudonymised (direct identifiers go)
    services.customer_pseudonymise(customer_ids=[customer.pk], reason="test", actor=None)
    after = Customer.objects.get(pk=customer.pk)
    # then the declared generalisations leave their trace
    assert (after.address, after.birth_date) == ("", None)
    assert after.age_band.endswith("代") and after.prefecture == "27"


def test_every_declared_generalisation_is_usable():
    # given every generalisation declared in the registry
    declared = [
        (label, name, spec.generalise)
        for label, fields in REGISTRY.models.items()
        for name, spec in fields.items()
        if spec.generalise is not None
    ]
    assert declared, "the registry declares at least the birth date and address generalisations"
    for label, name, gen in declared:
        model = apps.get_model(label)
        target = REGISTRY.spec(label, gen.into)
        # then each names a known generaliser and a field of its model that anonymisation keeps
        assert gen.by in rules.GENERALISERS, (label, name)
        assert model._meta.get_field(gen.into).concrete, (label, name)
        assert target is not None and target.data_class in (DataClass.ANONYMISED, DataClass.ATTRIBUTE)
        assert not target.free_text, (label, name)
    # and no field is the trace of two others
    targets = [(label, gen.into) for label, _name, gen in declared]
    assert len(targets) == len(set(targets))


def test_a_spec_without_metadata_is_neither_free_text_nor_generalised():
    # given a declaration written the short way
    spec = FieldSpec(DataClass.ATTRIBUTE, (), "", "full", "x")
    # then it claims nothing it did not say
    assert (spec.free_text, spec.generalise) == (False, None)


def _string_literals(tree: ast.AST) -> list[str]:
    """String constants of the code, docstrings left out (operator notes may name a table for VACUUM)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|JOIN|INTO|TABLE|LOCK|VACUUM|ANALYZE)\b")


def test_no_table_name_is_written_in_the_retention_engine():
    # given the table of every installed model; a table name that is also a field name (RetentionPolicy's
    # consent_purpose, the table of consent.Purpose) counts only inside SQL
    models_ = apps.get_models(include_auto_created=True)
    tables = {m._meta.db_table for m in models_}
    field_names = {f.name for m in models_ for f in m._meta.get_fields()}
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, tables), key=len, reverse=True)) + r")\b")
    # when every string of the engine's code is read
    root = Path(rules.__file__).resolve().parent  # crm/retention, the services package included
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for text in _string_literals(ast.parse(path.read_text(encoding="utf-8"))):
            hits = {t for t in pattern.findall(text) if SQL_WORDS.search(text) or t not in field_names}
            if hits:
                found.setdefault(str(path.relative_to(root)), set()).update(hits)
    # then none names a table: they come from Model._meta.db_table
    assert found == {}


def test_the_table_name_check_sees_a_literal():
    # given code written the forbidden way, and a field that shares a table's name
    tree = ast.parse(
        '"""Docstring: VACUUM crm_customer."""\n'
        'def f():\n    """crm_customer in a docstring is prose."""\n'
        '    sql = f"UPDATE crm_customer SET x = 1 WHERE id = {y}"\n'
        '    fields = ["consent_purpose"]\n'
    )
    # then the literal is seen and the docstrings are not
    strings = _string_literals(tree)
    assert any("UPDATE crm_customer" in s for s in strings)
    assert not any("docstring" in s.lower() or "Docstring" in s for s in strings)
