"""Admin pages of the integration API: API clients (issue, show the token once, rotate, revoke)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template import RequestContext, Template
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from crm.audit.actors import request_user
from crm.integrations import services
from crm.integrations.models import ApiClient, ApiScope

# Rendered straight into the response to the POST that issued the token: the token is never put in a
# message, a session or a redirect URL, so it exists only on this one page.
TOKEN_PAGE = Template(
    """{% extends "admin/base_site.html" %}{% load i18n %}
{% block content %}
<h1>{{ title }}</h1>
<p>{% blocktranslate with name=client.name %}クライアント「{{ name }}」のトークンです。
この画面を閉じると二度と表示できません。
安全な場所（シークレット管理）に保管してください。{% endblocktranslate %}</p>
<p><code id="api-token" style="font-size:1.2em;user-select:all">{{ token }}</code></p>
{% if client.is_publishable %}<p>{% blocktranslate %}公開キーです。Webページに埋め込む Cookie バナー
（static/consent/cookie-consent.js）の data-key に設定します。{% endblocktranslate %}</p>{% endif %}
<p><a href="{{ back }}">{% translate "APIクライアントに戻る" %}</a></p>
{% endblock %}"""
)


class ApiClientForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        label=_("スコープ"), choices=ApiScope.choices, widget=forms.CheckboxSelectMultiple
    )
    allowed_origins = forms.CharField(
        label=_("許可するオリジン（CORS）"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("公開キーのみ。1行に1つ（例: https://www.example.co.jp）。"),
    )

    class Meta:
        model = ApiClient
        fields = ["name", "description", "team", "scopes", "allowed_origins", "rate_limit_per_minute"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["allowed_origins"] = "\n".join(self.instance.allowed_origins)

    def clean_allowed_origins(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["allowed_origins"].splitlines() if line.strip()]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data  # what ModelForm.clean returns (typed Optional on Form.clean)
        if "scopes" in data and "allowed_origins" in data:
            try:
                services.validate_client_scopes(data["scopes"], data["allowed_origins"])
            except ValidationError as exc:
                raise forms.ValidationError(exc.message_dict) from exc
        return data


def _token_page(request: HttpRequest, client: ApiClient, token: str, title: str) -> HttpResponse:
    html = TOKEN_PAGE.render(
        RequestContext(
            request,
            {
                "title": title,
                "client": client,
                "token": token,
                "back": reverse("admin:crm_apiclient_changelist"),
                "site_header": admin.site.site_header,
                "site_title": admin.site.site_title,
                "has_permission": True,
            },
        )
    )
    response = HttpResponse(html)
    response["Cache-Control"] = "no-store"
    return response


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    """Clients of the integration API. Writes go through crm.integrations.services."""

    form = ApiClientForm
    list_display = ("name", "team", "scope_list", "token_prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    readonly_fields = ("token_prefix", "user", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke", "rotate"]
    search_fields = ("name",)

    @admin.display(description=_("スコープ"))
    def scope_list(self, obj: ApiClient) -> str:
        return ", ".join(obj.scopes)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiClient | None = None) -> Any:
        ro = list(self.readonly_fields)
        return [*ro, "name", "team"] if obj is not None else ro

    def has_delete_permission(self, request: HttpRequest, obj: ApiClient | None = None) -> bool:
        # Revoke instead: audit entries and ledger rows keep pointing at the client.
        return False

    def save_model(self, request: HttpRequest, obj: ApiClient, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            if change:
                services.api_client_update(
                    client=obj,
                    actor=request_user(request),
                    description=data["description"],
                    scopes=data["scopes"],
                    allowed_origins=data["allowed_origins"],
                    rate_limit_per_minute=data["rate_limit_per_minute"],
                )
            else:
                client, token = services.api_client_create(
                    name=data["name"],
                    team=data["team"],
                    scopes=data["scopes"],
                    description=data["description"],
                    allowed_origins=data["allowed_origins"],
                    rate_limit_per_minute=data["rate_limit_per_minute"],
                    actor=request_user(request),
                )
                obj.pk = client.pk
                request._issued_token = (client, token)  # type: ignore[attr-defined]  # stub gap: own request attribute
        except ValidationError as exc:
            # The form validated its own fields; service rules (e.g. publishable-only scope) land here.
            messages.error(request, " ".join(exc.messages))
            request._service_error = True  # type: ignore[attr-defined]  # stub gap: own request attribute

    def response_add(
        self, request: HttpRequest, obj: ApiClient, post_url_continue: Any = None
    ) -> HttpResponse:
        issued = getattr(request, "_issued_token", None)
        if issued is None:
            return self.response_post_save_add(request, obj)
        client, token = issued
        return _token_page(request, client, token, str(_("トークンを発行しました")))

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        if getattr(request, "_service_error", False):
            return None
        return super().log_addition(request, obj, message)

    @admin.action(description=_("選択したクライアントを失効させる"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        for client in queryset:
            services.api_client_revoke(client=client, actor=request_user(request))
        messages.success(request, _("%(n)d件のクライアントを失効させました。") % {"n": queryset.count()})

    @admin.action(description=_("トークンを再発行する（1件のみ）"), permissions=["change"])
    def rotate(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> HttpResponse | None:
        if queryset.count() != 1:
            messages.error(request, _("トークンの再発行は1件ずつ選んでください。"))
            return None
        client = queryset.get()
        try:
            token = services.api_client_rotate(client=client, actor=request_user(request))
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return None
        return _token_page(request, client, token, str(_("トークンを再発行しました")))
