"""Every concrete field of every model of our apps is classified in the registry (crm.classification)."""

import pytest
from django.apps import apps

from crm.classification import REGISTRY

OUR_APPS = ("crm", "consent", "incidents")


def _fields():
    for app_label in OUR_APPS:
        for model in apps.get_app_config(app_label).get_models():
            for field in model._meta.concrete_fields:
                yield model._meta.label, field.name


@pytest.mark.parametrize(("label", "name"), list(_fields()))
def test_every_field_is_classified(label, name):
    # given a concrete model field of our apps
    # then the registry declares its class (personal or explicitly not personal)
    assert REGISTRY.spec(label, name) is not None, (
        f"{label}.{name} has no data class: declare it in the app's field_classes.py"
    )


def test_an_unclassified_field_is_caught():
    # given a label/field the registry has never heard of
    # then the lookup the test above relies on says so
    assert REGISTRY.spec("crm.Customer", "shoe_size") is None
