"""Every concrete field of every model of our apps is classified in the registry (crm.classification)."""

import pytest
from django.apps import apps
from django.db import models
from django.test.utils import isolate_apps

from crm.classification import REGISTRY
from crm.models import Customer

OUR_APPS = ("crm", "consent", "incidents")


def _unclassified(model: type[models.Model]) -> list[str]:
    """The concrete fields of a model that the registry does not classify."""
    return [f.name for f in model._meta.concrete_fields if REGISTRY.spec(model._meta.label, f.name) is None]


def _models():
    for app_label in OUR_APPS:
        yield from apps.get_app_config(app_label).get_models()


@pytest.mark.parametrize("model", list(_models()), ids=lambda m: m._meta.label)
def test_every_field_is_classified(model):
    # given a model of our apps
    # then the registry declares the class of each of its fields (personal or explicitly not personal)
    assert _unclassified(model) == [], (
        f"{model._meta.label} has fields with no data class: declare them in the app's field_classes.py"
    )


@isolate_apps("crm")
def test_a_field_added_without_a_class_is_caught():
    # given the customer model as it is, grown by a field nobody classified
    fields = {f.name: f.clone() for f in Customer._meta.concrete_fields}
    grown = type(
        "Customer",
        (models.Model,),
        {
            **fields,
            "shoe_size": models.IntegerField(),
            "__module__": __name__,
            "Meta": type("Meta", (), {"app_label": "crm"}),
        },
    )
    # then the check above names exactly that field
    assert grown._meta.label == Customer._meta.label
    assert _unclassified(grown) == ["shoe_size"]
    # and the model as it is has none
    assert _unclassified(Customer) == []
