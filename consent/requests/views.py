"""The public request form under /privacy/requests/ (no login).

The requester gives an e-mail address and the kind of request; a confirmation link goes to that address and
the request enters the desk's queue only when it is followed (consent.requests.services). The page answers
the same whatever the address is: nothing here looks it up. Submissions are counted per address (by keyed
hash) and per source address, with the integration API's Redis counters (crm.integrations.ratelimit).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.views.decorators.http import require_http_methods

from consent.requests import services
from consent.requests.models import RequestKind
from crm.crypto import email_index
from crm.integrations.ratelimit import rate_limit_hit
from crm.signin.identity import client_address

LANGS = ("ja", "en")


class PublicRequestForm(forms.Form):
    email = forms.EmailField(max_length=254)
    kind = forms.ChoiceField(choices=RequestKind.choices)

    def __init__(self, *args: Any, lang: str = "ja", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The page's own language switch (the public pages ignore the admin's language setting).
        with translation.override(lang):
            labels = [(value, str(label)) for value, label in RequestKind.choices]
        self.fields["kind"].choices = labels  # type: ignore[attr-defined]  # stub gap: ChoiceField.choices


def _lang(request: HttpRequest) -> str:
    lang = request.GET.get("lang", "ja")
    return lang if lang in LANGS else "ja"


def _within_limits(request: HttpRequest, email: str) -> bool:
    """One submission counted against the address's and the source's budgets (per minute)."""
    source = client_address(request) or "unknown"
    per_source = rate_limit_hit(
        bucket=f"dsr-form:source:{source}", limit=int(settings.REQUEST_FORM_RATE_LIMIT_PER_SOURCE)
    )
    if not per_source.allowed:
        return False
    per_address = rate_limit_hit(
        bucket=f"dsr-form:address:{email_index(email)}",
        limit=int(settings.REQUEST_FORM_RATE_LIMIT_PER_ADDRESS),
    )
    return per_address.allowed


@require_http_methods(["GET", "POST"])
def request_form(request: HttpRequest) -> HttpResponse:
    """The form; after a valid submission, the same "check your e-mail" page for every address."""
    lang = _lang(request)
    form = PublicRequestForm(request.POST or None, lang=lang)
    context = {"lang": lang, "company": settings.CRM_COMPANY, "form": form}
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        if not _within_limits(request, email):
            return render(request, "consent/request_form.html", {**context, "limited": True}, status=429)

        def link(token: str) -> str:
            return (
                request.build_absolute_uri(reverse("consent:request_confirm", args=[token])) + f"?lang={lang}"
            )

        services.request_submit_public(
            email=email, kind=form.cleaned_data["kind"], language=lang, confirm_url=link
        )
        return render(request, "consent/request_sent.html", context)
    return render(request, "consent/request_form.html", context, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
def request_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """The link of the confirmation e-mail: a page with a button (a mail scanner's GET confirms nothing);
    the button confirms the request. An unknown, used or expired link gets the same "not valid" page."""
    lang = _lang(request)
    context = {"lang": lang, "company": settings.CRM_COMPANY}
    if request.method == "POST":
        confirmed = services.request_confirm(token=token)
        return render(
            request,
            "consent/request_confirmed.html",
            {**context, "confirmed": confirmed is not None, "number": confirmed.pk if confirmed else None},
            status=200 if confirmed else 404,
        )
    return render(request, "consent/request_confirm.html", context)
