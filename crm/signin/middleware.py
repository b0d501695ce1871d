"""Admin session rules: sign out after an idle period, and no admin page without the second factor where
one is required. Both run after Django's session, authentication and django-otp middleware."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlencode

from auditlog.middleware import AuditlogMiddleware
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext as _

from crm.signin.identity import client_address
from crm.signin.selectors import second_factor_enrolled, second_factor_required

LAST_SEEN = "crm_last_seen"  # session key: when the session last served a request (epoch seconds)
# The last-seen time is written at most this often, so most requests do not write the session.
LAST_SEEN_GRANULARITY = 60


def _admin_path(request: HttpRequest) -> bool:
    return request.path_info.startswith(reverse("admin:index"))


def _to(url_name: str, request: HttpRequest) -> HttpResponseRedirect:
    return HttpResponseRedirect(f"{reverse(url_name)}?{urlencode({'next': request.get_full_path()})}")


class AdminIdleTimeoutMiddleware:
    """Ends a signed-in session that has served no request for ADMIN_IDLE_TIMEOUT_MINUTES (the audit trail
    records it as a sign-out by idle timeout); the next admin page asks for the password again."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        user = getattr(request, "user", None)
        if session is not None and user is not None and user.is_authenticated:
            now = int(time.time())
            last = session.get(LAST_SEEN)
            if isinstance(last, int) and now - last > settings.ADMIN_IDLE_TIMEOUT_MINUTES * 60:
                # Read by the sign-out receiver.
                request.crm_idle_timeout = True  # type: ignore[attr-defined]  # stub gap: own request attribute
                logout(request)
                messages.info(
                    request, _("一定時間操作がなかったため、ログアウトしました。再度ログインしてください。")
                )
                if _admin_path(request):
                    return _to("admin:login", request)
            elif not isinstance(last, int) or now - last >= LAST_SEEN_GRANULARITY:
                session[LAST_SEEN] = now
        return self.get_response(request)


class SecondFactorRequiredMiddleware:
    """On admin pages, a signed-in user who needs a second factor (crm.signin.selectors) and has not given
    one in this session is sent to enrol (first sign-in) or to verify; the sign-in, sign-out and second-factor
    pages themselves stay open. OTP_DEV_BYPASS (development only, refused in production) turns it off."""

    OPEN = ("admin:login", "admin:logout", "signin:otp_verify", "signin:otp_enrol", "admin:jsi18n")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if (
            user is not None
            and not settings.OTP_DEV_BYPASS
            and user.is_authenticated
            and _admin_path(request)
            and not user.is_verified()
            and request.path_info not in {reverse(name) for name in self.OPEN}
            and second_factor_required(user)
        ):
            return _to("signin:otp_verify" if second_factor_enrolled(user) else "signin:otp_enrol", request)
        return self.get_response(request)


class AuditlogTrustedAddressMiddleware(AuditlogMiddleware):
    """django-auditlog's middleware, recording the address the sign-in lockout counts (client_address).

    auditlog takes the leftmost X-Forwarded-For entry, which any client can write: an audit entry would name
    whatever address the caller made up. Here the address is the connection's, or the one the nearest trusted
    proxy saw (TRUSTED_PROXY_HOPS), and X-Forwarded-Port (as freely written) is kept only behind a proxy."""

    def get_extra_data(self, request: HttpRequest) -> dict[str, object]:
        data: dict[str, object] = super().get_extra_data(request)
        data["remote_addr"] = data["remote_addr"] and client_address(request)  # None: addresses disabled
        if int(getattr(settings, "TRUSTED_PROXY_HOPS", 0)) == 0:
            data["remote_port"] = None
        return data
