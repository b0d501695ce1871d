"""The disclosure packages in the admin: their state and progress, the handler's expiring download link, and
the order / rebuild buttons, which call the services (presentation only). Registered at app loading
(consent.apps)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from consent.disclosure import selectors, services
from consent.disclosure.models import DisclosurePackage
from consent.requests.models import DataSubjectRequest
from crm.admin.mixins import ReadOnlyAdminMixin, ReadOnlyInline, object_not_found_redirect
from crm.audit.actors import request_user
from crm.crypto import DecryptionError
from crm.services import access_record


def progress_bar(package: DisclosurePackage) -> str:
    """The build's progress as an HTML <progress> element (no inline style: the CSP)."""
    return format_html(
        '<progress value="{}" max="100">{}%</progress> {}%',
        package.progress,
        package.progress,
        package.progress,
    )


class DisclosurePackageInline(ReadOnlyInline):
    """The packages of a request, with their progress, for the request's page."""

    model = DisclosurePackage
    fields = ("package_link", "state", "progress_display", "ready_at", "expires_at")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only on an existing request's page: the add form has no packages (and posts no inline formset).
        return obj is not None and super().has_view_permission(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[DisclosurePackage]:
        return selectors.disclosure_packages_for(request_user(request))

    @admin.display(description=_("開示データ"))
    def package_link(self, obj: DisclosurePackage) -> str:
        url = reverse("admin:consent_disclosurepackage_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, str(obj))

    @admin.display(description=_("進捗"))
    def progress_display(self, obj: DisclosurePackage) -> str:
        return progress_bar(obj)


@admin.register(DisclosurePackage)
class DisclosurePackageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "request_link", "state", "progress_display", "size", "ready_at", "expires_at")
    list_filter = ("state",)
    list_select_related = ("request",)
    readonly_fields = ("progress_display",)
    fields = (
        "request",
        "state",
        "progress_display",
        "language",
        "attempts",
        "size",
        "sha256",
        "contents",
        "error",
        "requested_by",
        "created_at",
        "ready_at",
        "expires_at",
        "removed_at",
    )
    change_form_template = "admin/consent/disclosurepackage/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[DisclosurePackage]:
        return selectors.disclosure_packages_for(request_user(request)).select_related("request")

    @admin.display(description=_("開示等請求"))
    def request_link(self, obj: DisclosurePackage) -> str:
        return str(obj.request)

    @admin.display(description=_("進捗"))
    def progress_display(self, obj: DisclosurePackage) -> str:
        return progress_bar(obj)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The page shows a download link signed for the user who opens it, when the package can be had."""
        extra = dict(extra_context or {})
        package = (
            selectors.downloadable(user=request_user(request), package_id=int(object_id))
            if object_id.isdigit()
            else None
        )
        if package is not None:
            extra["download_url"] = reverse(
                "admin:consent_disclosurepackage_download",
                args=[package.pk, selectors.download_token(package=package, user=request_user(request))],
            )
            extra["download_minutes"] = max(1, int(settings.DISCLOSURE_LINK_SECONDS) // 60)
        return super().change_view(request, object_id, form_url, extra)

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:object_id>/download/<str:token>/",
                wrap(self.download_view),
                name="consent_disclosurepackage_download",
            ),
            path("order/<int:request_id>/", wrap(self.order_view), name="consent_disclosurepackage_order"),
            path(
                "<int:object_id>/rebuild/", wrap(self.rebuild_view), name="consent_disclosurepackage_rebuild"
            ),
            *super().get_urls(),
        ]

    def download_view(self, request: HttpRequest, object_id: int, token: str) -> HttpResponseBase:
        """The package's ZIP, for the user the link was signed for, within its validity, through the gate.
        Each download is an access entry in the audit trail (ids only)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        user = request_user(request)
        try:
            selectors.download_token_check(token=token, package_id=object_id, user=user)
        except selectors.LinkExpired:
            messages.warning(
                request, gettext("ダウンロード用リンクの有効期限が切れました。ページを開き直してください。")
            )
            return HttpResponseRedirect(reverse("admin:consent_disclosurepackage_change", args=[object_id]))
        except selectors.LinkInvalid:
            return object_not_found_redirect(request, self.model._meta, object_id)
        package = selectors.downloadable(user=user, package_id=object_id)
        if package is None:
            return object_not_found_redirect(request, self.model._meta, object_id)
        try:
            selectors.package_verify(package)
        except (DecryptionError, OSError) as exc:
            services.log.error("disclosure package %s does not open: %s", package.pk, type(exc).__name__)
            messages.error(request, gettext("開示データを読み出せません。再作成してください。"))
            return HttpResponseRedirect(reverse("admin:consent_disclosurepackage_change", args=[object_id]))
        access_record(instance=package, actor=user)
        services.disclosure_package_handed_over(package=package, actor=user)
        response = StreamingHttpResponse(selectors.package_chunks(package), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="disclosure-REQ-{package.request_id}.zip"'
        response["Content-Length"] = str(package.size)
        response["Cache-Control"] = "no-store"
        return response

    def order_view(self, request: HttpRequest, request_id: int) -> HttpResponse:
        """POST: order the package of a request (the service refuses before identity verification)."""
        if request.method != "POST":
            return HttpResponse(status=405)
        user = request_user(request)
        dsr = get_object_or_404(DataSubjectRequest.objects.restrict(user, "view"), pk=request_id)
        try:
            package = services.disclosure_package_order(request=dsr, actor=user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return HttpResponseRedirect(reverse("admin:consent_disclosurepackage_changelist"))
        messages.success(request, gettext("開示データの作成を開始しました。"))
        return HttpResponseRedirect(reverse("admin:consent_disclosurepackage_change", args=[package.pk]))

    def rebuild_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """POST: build a failed package again (or re-send a build left behind by a stopped worker)."""
        if request.method != "POST":
            return HttpResponse(status=405)
        user = request_user(request)
        package = get_object_or_404(selectors.disclosure_packages_for(user), pk=object_id)
        try:
            services.disclosure_package_rebuild(package=package, actor=user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, gettext("開示データの再作成を開始しました。"))
        return HttpResponseRedirect(reverse("admin:consent_disclosurepackage_change", args=[object_id]))
