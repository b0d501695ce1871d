"""Error answers of the integration API: 4xx with field-level Japanese messages, never a 5xx for bad input.

Every error body has the same shape: `{"detail": "<message>"}` or, for field errors,
`{"detail": [{"loc": ["body", "payload", "email"], "msg": "…", "type": "…"}]}`: also 413 (body over
DATA_UPLOAD_MAX_MEMORY_SIZE), 415 (not application/json, crm.integrations.parser), and, through
config.api_errors, the 404/405/500 that Django or django-ninja answer before an operation runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from crm.integrations.auth import RateLimited
from crm.integrations.parser import BodyRefused
from crm.integrations.services import IdempotencyKeyReused

if TYPE_CHECKING:
    from collections.abc import Callable

    from ninja import NinjaAPI


def _pydantic_message(error: dict[str, Any]) -> str:
    """A Japanese message for a pydantic error type; the English text is kept as `type` for programs."""
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    messages = {
        "missing": _("必須項目です。"),
        "extra_forbidden": _("この項目は受け付けていません。"),
        "string_type": _("文字列で指定してください。"),
        "string_too_long": _("%(n)s文字以内で入力してください。") % {"n": ctx.get("max_length")},
        "string_too_short": _("%(n)s文字以上で入力してください。") % {"n": ctx.get("min_length")},
        "string_pattern_mismatch": _("使えない文字が含まれているか、形式が正しくありません。"),
        "int_type": _("整数で指定してください。"),
        "int_parsing": _("整数で指定してください。"),
        "int_from_float": _("整数で指定してください。"),
        "bool_type": _("true か false で指定してください。"),
        "bool_parsing": _("true か false で指定してください。"),
        "dict_type": _("オブジェクト（JSON）で指定してください。"),
        "list_type": _("配列で指定してください。"),
        "datetime_type": _("日時（ISO 8601、タイムゾーン付き）で指定してください。"),
        "datetime_parsing": _("日時（ISO 8601、タイムゾーン付き）で指定してください。"),
        "datetime_from_date_parsing": _("日時（ISO 8601、タイムゾーン付き）で指定してください。"),
        "timezone_aware": _("タイムゾーン付きの日時で指定してください（例: 2026-04-01T10:00:00+09:00）。"),
        "date_type": _("日付（YYYY-MM-DD）で指定してください。"),
        "date_parsing": _("日付（YYYY-MM-DD）で指定してください。"),
        "date_from_datetime_parsing": _("日付（YYYY-MM-DD）で指定してください。"),
        "greater_than_equal": _("%(n)s以上で指定してください。") % {"n": ctx.get("ge")},
        "less_than_equal": _("%(n)s以下で指定してください。") % {"n": ctx.get("le")},
        "literal_error": _("次のいずれかを指定してください: %(choices)s") % {"choices": ctx.get("expected")},
        "enum": _("次のいずれかを指定してください: %(choices)s") % {"choices": ctx.get("expected")},
        "json_invalid": _("JSONとして読めません。"),
        "model_attributes_type": _("オブジェクト（JSON）で指定してください。"),
    }
    if kind == "value_error" and ctx.get("error") is not None:
        return str(ctx["error"])
    return messages.get(kind, _("入力値が正しくありません。"))


def field_errors_from_pydantic(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"loc": list(e.get("loc", [])), "msg": _pydantic_message(e), "type": e.get("type", "invalid")}
        for e in errors
    ]


def field_errors_from_django(exc: DjangoValidationError, prefix: tuple[str, ...] = ("body",)) -> list[dict]:
    """Django's message_dict as the API's field list (messages are already Japanese, no values echoed)."""
    if hasattr(exc, "error_dict"):
        out = []
        for field, errors in exc.error_dict.items():
            loc = [*prefix] if field == "__all__" else [*prefix, field]
            out += [{"loc": loc, "msg": " ".join(e.messages), "type": e.code or "invalid"} for e in errors]
        return out
    return [{"loc": list(prefix), "msg": m, "type": "invalid"} for m in exc.messages]


def install_error_handlers(api: NinjaAPI) -> None:
    """Register the handlers on the API (called once by config.api)."""

    def validation(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
        return api.create_response(request, {"detail": field_errors_from_pydantic(exc.errors)}, status=422)

    def django_validation(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
        return api.create_response(request, {"detail": field_errors_from_django(exc)}, status=422)

    def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        response = api.create_response(
            request, {"detail": _("認証トークンがないか、正しくないか、失効しています。")}, status=401
        )
        response["WWW-Authenticate"] = "Bearer"
        return response

    def rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
        response = api.create_response(request, {"detail": exc.message}, status=429)
        response["Retry-After"] = str(exc.retry_after)
        response["RateLimit-Limit"] = str(exc.limit)
        return response

    def body_refused(request: HttpRequest, exc: BodyRefused) -> HttpResponse:
        detail: Any = exc.message
        if exc.error_type:
            detail = [{"loc": ["body"], "msg": exc.message, "type": exc.error_type}]
        return api.create_response(request, {"detail": detail}, status=exc.status)

    def too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        # Django's own answer would be its HTML 400 page.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return api.create_response(
            request,
            {"detail": _("リクエスト本文が大きすぎます（上限 %(n)s バイト）。") % {"n": limit}},
            status=413,
        )

    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if isinstance(exc.__cause__, BodyRefused):
            # django-ninja wraps every exception of the parser in a 400 (crm.integrations.parser).
            return body_refused(request, exc.__cause__)
        message = exc.message
        if exc.status_code == 400 and message.startswith("Cannot parse request body"):
            message = _("リクエスト本文をJSONとして読めません。")
        return api.create_response(request, {"detail": message}, status=exc.status_code)

    def key_reused(request: HttpRequest, exc: IdempotencyKeyReused) -> HttpResponse:
        return api.create_response(
            request,
            {
                "detail": _(
                    "この Idempotency-Key は別の内容のリクエストで使用済みです。新しいキーを使ってください。"
                )
            },
            status=422,
        )

    # Typed loosely: django-ninja annotates a handler as taking the exception or its class.
    handlers: dict[type[Exception], Callable[..., HttpResponse]] = {
        NinjaValidationError: validation,
        DjangoValidationError: django_validation,
        AuthenticationError: unauthenticated,
        RateLimited: rate_limited,
        HttpError: http_error,
        RequestDataTooBig: too_big,
        IdempotencyKeyReused: key_reused,
    }
    for exc_class, handler in handlers.items():
        api.add_exception_handler(exc_class, handler)
