"""API clients, hashed tokens and idempotency records for the integration API (/api/v1/).

A client is a website, store system or app that writes through the API. Its token is shown once when it is
issued and only its SHA-256 is kept (the token carries 256 bits of randomness, so a plain hash is as safe as a
slow one and costs microseconds per request). Each client acts through a *service user* (`api:<name>`, no
password, no admin access) that is a member of the client's team: the API therefore reads and writes
customers through the same `Customer.objects.restrict(user, action)` gate as the admin, and every audit
entry names the client as its actor.
"""

from __future__ import annotations

import datetime as dt

from auditlog.registry import auditlog
from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.fields import EncryptedTextField, staff_reference
from crm.permissions import RestrictedQuerySet
from crm.rawsql import ConstantInsert


class ApiScope(models.TextChoices):
    """What a token may do. `cookies:write` is for publishable keys, which live in web pages."""

    CUSTOMERS_WRITE = "customers:write", _("顧客の登録・更新（customers:write）")
    CONSENTS_WRITE = "consents:write", _("同意の記録（consents:write）")
    CONSENTS_READ = "consents:read", _("同意状態の参照（consents:read）")
    EVENTS_WRITE = "events:write", _("行動イベント・購買の記録（events:write）")
    REQUESTS_WRITE = "requests:write", _("開示等請求の受付（requests:write）")
    COOKIES_WRITE = "cookies:write", _("Cookie同意の記録・公開キー専用（cookies:write）")
    # A monitoring system opening a breach incident (漏えい等事案) the moment it detects one (incidents.api).
    INCIDENTS_WRITE = "incidents:write", _("漏えい等事案の登録・監視システム用（incidents:write）")


class ApiClient(models.Model):
    """A system allowed to call the integration API, with its scopes and (hashed) token.

    `token_prefix` is the public half of the token and the lookup key; `token_hash` is SHA-256 of the whole
    token. A publishable client (scope `cookies:write` only) may be embedded in web pages: it can do nothing
    but record cookie categories for an anonymous visitor, only from its `allowed_origins`.
    """

    name = models.SlugField(
        _("名前"), max_length=50, unique=True, help_text=_("英数字とハイフン。例: corporate-site")
    )
    description = models.CharField(_("説明"), max_length=200, blank=True)
    team = models.ForeignKey(
        "crm.Team",
        on_delete=models.PROTECT,
        related_name="api_clients",
        verbose_name=_("担当チーム"),
        help_text=_("新しい顧客はこのチームに属し、このチームの顧客だけを更新できます。"),
    )
    scopes = models.JSONField(_("スコープ"), default=list)
    allowed_origins = models.JSONField(
        _("許可するオリジン（CORS）"),
        default=list,
        blank=True,
        help_text=_("公開キーを使うWebサイトのオリジン。例: https://www.example.co.jp"),
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        _("レート制限（回/分）"),
        null=True,
        blank=True,
        help_text=_("空欄のときは既定値（設定 API_RATE_LIMIT_PER_MINUTE）を使います。"),
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="api_client",
        verbose_name=_("サービスユーザー"),
        editable=False,
    )
    token_prefix = models.CharField(_("トークン接頭辞"), max_length=24, unique=True, editable=False)
    token_hash = models.CharField(_("トークンハッシュ"), max_length=64, editable=False)
    created_by = staff_reference(_("発行者"), on_delete=models.SET_NULL, editable=False)
    created_at = models.DateTimeField(_("発行日時"), auto_now_add=True)
    revoked_at = models.DateTimeField(_("失効日時"), null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(_("最終利用日時"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("APIクライアント")
        verbose_name_plural = _("APIクライアント")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def is_publishable(self) -> bool:
        return list(self.scopes) == [ApiScope.COOKIES_WRITE]

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def effective_rate_limit(self) -> int:
        return self.rate_limit_per_minute or int(getattr(settings, "API_RATE_LIMIT_PER_MINUTE", 6000))


class IdempotencyRecordQuerySet(RestrictedQuerySet["IdempotencyRecord"]):
    """Stored answers (they may name a customer's external id): reachable with the client's team's
    customers."""

    gate_team = "client__team"


class IdempotencyRecord(ConstantInsert, models.Model):
    """The answer given to a POST with an `Idempotency-Key`: a retry gets the same answer and no second write.

    `fingerprint` is a keyed HMAC of method, path and body (never the body itself): a retry with the same key
    but a different body is refused. The stored response body is encrypted (crm.crypto) because an answer may
    name a customer's external id. Records expire after API_IDEMPOTENCY_TTL_HOURS (default 24 h).
    """

    client = models.ForeignKey(
        ApiClient, on_delete=models.CASCADE, related_name="+", verbose_name=_("APIクライアント")
    )
    key = models.CharField(_("冪等キー"), max_length=255)
    fingerprint = models.CharField(_("要求の指紋（HMAC）"), max_length=64)
    response_status = models.PositiveSmallIntegerField(_("応答ステータス"))
    response_body = EncryptedTextField(_("応答本文（暗号化）"))
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)
    expires_at = models.DateTimeField(_("有効期限"), db_index=True)

    objects = IdempotencyRecordQuerySet.as_manager()

    class Meta:
        verbose_name = _("冪等キー記録")
        verbose_name_plural = _("冪等キー記録")
        constraints = [models.UniqueConstraint(fields=["client", "key"], name="uniq_idempotency_client_key")]

    def __str__(self) -> str:
        return f"冪等キー #{self.pk}"

    @property
    def expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @staticmethod
    def default_expiry() -> dt.datetime:
        hours = int(getattr(settings, "API_IDEMPOTENCY_TTL_HOURS", 24))
        return timezone.now() + dt.timedelta(hours=hours)


# Classification and audit registration of this area (crm.apps.ready imports crm.models, which imports us).
from crm.integrations import field_classes  # noqa: E402,F401

# Issuing, changing and revoking a client is security-relevant: audited. The hash is not a value to keep in
# a log, and last-use timestamps are written with update() (not seen by auditlog, on purpose: no noise).
auditlog.register(ApiClient, exclude_fields=["token_hash", "last_used_at"])

# 個人情報保護管理者 issues and revokes clients (a token can write customers); security reviews them.
from crm.permissions import ROLE_PRIVACY, ROLE_SECURITY  # noqa: E402
from crm.roles import grant_role_permissions  # noqa: E402

grant_role_permissions(ROLE_PRIVACY, ["crm.view_apiclient", "crm.add_apiclient", "crm.change_apiclient"])
grant_role_permissions(ROLE_SECURITY, ["crm.view_apiclient"])
