"""Middleware the integration API does without.

The API (/api/, config.api) authenticates every call by token, keeps no session, sets no cookie, is exempt
from CSRF by design (django-ninja's views, bearer tokens) and serves no static file. Running the session,
authentication, messages and static-file middleware for it anyway cost about 1 ms of CPU per call
(bench/api_bench.py's `CPU ms`: ~13 % of a consent write). Each class below is that middleware for every
other path and steps aside for the API: the request goes straight on, none of its hooks run. They subclass
the middleware they stand for, so Django's checks (the admin needs sessions, authentication and messages)
still find it. CSRF stays Django's own (its deploy check looks for it by name; for the API's exempt views it
costs nothing). Security headers, language, clickjacking protection and the audit context
(AuditlogMiddleware: actor, address, correlation id) apply to the API as to every page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django_otp.middleware import OTPMiddleware
from whitenoise.middleware import WhiteNoiseMiddleware

from config.api_paths import is_api

if TYPE_CHECKING:  # to mypy the mixin stands on a middleware (the class it is mixed into supplies __call__)

    class _Middleware:
        def __call__(self, request: HttpRequest) -> HttpResponse: ...

else:
    _Middleware = object


class _WebOnly(_Middleware):
    """Mixin: the middleware it is mixed into does nothing for the integration API's requests."""

    # WSGI only (config.wsgi); under ASGI Django runs it in a thread, as any sync-only middleware.
    async_capable = False
    get_response: Any

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api(request):
            return self.get_response(request)
        return super().__call__(request)


class WhiteNoiseWebOnly(_WebOnly, WhiteNoiseMiddleware):
    pass


class SessionWebOnly(_WebOnly, SessionMiddleware):
    pass


class AuthenticationWebOnly(_WebOnly, AuthenticationMiddleware):
    pass


class MessagesWebOnly(_WebOnly, MessageMiddleware):
    pass


class OTPWebOnly(_WebOnly, OTPMiddleware):
    pass
