"""Classification of the integration API's models (crm.classification): none holds customer data in clear."""

from crm.classification import REGISTRY, not_personal

REGISTRY.declare(
    "crm.ApiClient",
    id=not_personal(),
    name=not_personal("連携システム名"),
    description=not_personal(),
    team=not_personal(),
    scopes=not_personal(),
    allowed_origins=not_personal("連携先Webサイトのオリジン"),
    rate_limit_per_minute=not_personal(),
    user=not_personal("サービスユーザー（顧客ではない）"),
    token_prefix=not_personal("トークンの公開部分"),
    token_hash=not_personal("トークンのSHA-256（秘密ではないが監査ログから除外）"),
    created_by=not_personal("従業者"),
    created_at=not_personal(),
    revoked_at=not_personal(),
    last_used_at=not_personal(),
)
REGISTRY.declare(
    "crm.IdempotencyRecord",
    id=not_personal(),
    client=not_personal(),
    key=not_personal("クライアントが付けた再送識別子"),
    fingerprint=not_personal("要求の鍵付きハッシュ"),
    response_status=not_personal(),
    # Answers carry ids and external ids only, encrypted anyway; they expire within a day.
    response_body=not_personal("応答（ID等のみ・暗号化・24時間で失効）"),
    created_at=not_personal(),
    expires_at=not_personal(),
)
