"""The second factor's pages under the admin: enrolment (first sign-in) and verification (every sign-in).

Presentation only: the devices, codes and audit entries are written by crm.signin.services.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import segno
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django_otp import devices_for_user
from django_otp import login as otp_login

from crm.audit.actors import request_user
from crm.signin import services
from crm.signin.forms import TokenForm
from crm.signin.selectors import second_factor_enrolled


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("admin:index")


def _page(request: HttpRequest, template: str, title: str, **context: Any) -> HttpResponse:
    return render(
        request,
        template,
        {**admin.site.each_context(request), "title": title, "next": _next(request), **context},
    )


@never_cache
@login_required(login_url="admin:login")
def otp_verify(request: HttpRequest) -> HttpResponse:
    """Ask for a code from the user's authenticator app (or a recovery code) after the password."""
    user = request_user(request)
    if user.is_verified():  # type: ignore[attr-defined]  # stub gap: django-otp's middleware adds it
        return HttpResponseRedirect(_next(request))
    if not second_factor_enrolled(user):
        return HttpResponseRedirect(f"{reverse('signin:otp_enrol')}?{urlencode({'next': _next(request)})}")
    form = TokenForm(request.POST or None)
    if request.method == "POST":
        device = None
        if form.is_valid():
            with transaction.atomic():
                # Every device (TOTP, then recovery codes); each counts its own failures and refuses for a
                # growing delay after them (django-otp's throttling).
                for candidate in devices_for_user(user, for_verify=True):
                    if candidate.verify_token(form.cleaned_data["token"]):
                        device = candidate
                        break
        if device is not None:
            otp_login(request, device)
            services.second_factor_verified_record(user=user, device=device)
            return HttpResponseRedirect(_next(request))
        services.second_factor_failed_record(user=user)
        form.add_error(
            None, _("確認コードが正しくないか、試行が多すぎます。しばらくしてから再度お試しください。")
        )
    return _page(request, "admin/signin/otp_verify.html", _("二要素認証"), form=form)


@never_cache
@login_required(login_url="admin:login")
def otp_enrol(request: HttpRequest) -> HttpResponse:
    """First sign-in of a user who needs a second factor: scan the QR code, confirm with a code; then the
    recovery codes are shown, once."""
    user = request_user(request)
    if second_factor_enrolled(user):
        return HttpResponseRedirect(f"{reverse('signin:otp_verify')}?{urlencode({'next': _next(request)})}")
    device = services.second_factor_enrol_start(user=user)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        codes = services.second_factor_enrol_confirm(
            user=user, device=device, token=form.cleaned_data["token"]
        )
        if codes is not None:
            otp_login(request, device)
            return _page(request, "admin/signin/otp_recovery_codes.html", _("回復用コード"), codes=codes)
        form.add_error(
            "token", _("確認コードが正しくありません。アプリに表示されている最新のコードを入力してください。")
        )
    qr = segno.make(device.config_url, error="m")
    # An inline SVG element (no script, no data: URL), so the page needs nothing beyond the CSP's 'self'.
    svg = qr.svg_inline(scale=5, dark="#000", light="#fff", omitsize=False)
    return _page(
        request,
        "admin/signin/otp_enrol.html",
        _("二要素認証の登録"),
        form=form,
        qr_svg=mark_safe(svg),  # noqa: S308 — segno's own markup of our own key URL
        secret=_spaced(_base32(device.bin_key)),
    )


def _base32(key: bytes) -> str:
    import base64

    return base64.b32encode(key).decode("ascii").rstrip("=")


def _spaced(text: str) -> str:
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))
