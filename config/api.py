"""The integration API (/api/v1/): django-ninja, OpenAPI schema at /api/v1/openapi.json, docs at /api/v1/docs.

django-ninja because the project is Django already: routers live in each app's api.py beside its services,
request bodies are typed pydantic schemas (so the OpenAPI document is generated from the code that validates,
and the fuzz test in tests/consent/test_api_fuzz.py can attack the API from that document), and it needs no
second framework (DRF) with its own permission and serializer layers.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import NinjaAPI, Schema

from consent.api import cookie_router
from consent.api import router as consent_router
from consent.requests.api import router as requests_router
from crm.api import events_router
from crm.api import router as customers_router
from crm.integrations.errors import install_error_handlers
from crm.integrations.parser import StrictJsonParser

api = NinjaAPI(
    urls_namespace="api_v1",
    parser=StrictJsonParser(),
    title="顧客管理システム 連携API",
    version="1",
    description=(
        "Webサイト・店舗・アプリから顧客・同意・行動イベントを登録するAPIです。"
        "`Authorization: Bearer <token>` で認証し、トークンごとのスコープで操作が決まります。"
        "POST/PUT は `Idempotency-Key` ヘッダーを受け付け、"
        "同じキーの再送には同じ応答を返します（二重登録なし）。"
        "本文は `Content-Type: application/json`（UTF-8）で送ります"
        "（それ以外は 415、上限を超える本文は 413）。"
        "入力エラーは 422（項目ごとの日本語メッセージ）、レート制限超過は 429（Retry-After 付き）です。"
    ),
)
install_error_handlers(api)


class HealthOut(Schema):
    status: str


@api.get("/health", response=HealthOut, tags=["health"], summary="死活監視（認証不要）")
def health(request: HttpRequest) -> Any:
    """Answers without touching the database (also the baseline of bench/api_bench.py)."""
    return {"status": "ok"}


api.add_router("", customers_router)
api.add_router("", events_router)
api.add_router("", consent_router)
api.add_router("", cookie_router)
api.add_router("", requests_router)
