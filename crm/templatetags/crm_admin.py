"""Template tags of the crm admin."""

from __future__ import annotations

from typing import Any

from django import template
from django.contrib.admin.templatetags.admin_list import search_form

from crm.search_token import SEARCH_TOKEN_VAR

register = template.Library()


@register.inclusion_tag("admin/crm/customer_search_form.html", takes_context=True)
def customer_search_form(context: Any, cl: Any) -> dict[str, Any]:
    """Django's `search_form` for the customer list, posting its term (crm.search_token: never in a URL)."""
    return {
        **search_form(cl),
        "search_token_var": SEARCH_TOKEN_VAR,
        "request": context["request"],
        "csrf_token": context.get("csrf_token"),
    }
