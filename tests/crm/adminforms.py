"""Build the POST data an admin change form would send, from the form the admin itself builds."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import Model
from django.forms import MultiWidget
from django.test import RequestFactory


def admin_form_data(user: Any, obj: Model, **overrides: Any) -> dict[str, Any]:
    """The change form of `obj` as `user` sees it, submitted unchanged except for `overrides`."""
    model_admin = admin.site._registry[type(obj)]
    request = RequestFactory().get("/")
    request.user = user
    fields = flatten_fieldsets(model_admin.get_fieldsets(request, obj))
    form = model_admin.get_form(request, obj, change=True, fields=fields)(instance=obj)
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form[name].value()  # already prepared for the widget (JSON text, pk, datetime …)
        if isinstance(field.widget, MultiWidget):  # split date/time inputs: name_0, name_1
            for i, part in enumerate(field.widget.decompress(value)):
                data[f"{name}_{i}"] = "" if part is None else str(part)
        else:
            data[name] = "" if value is None else value
    data.update(overrides)
    return data
