"""The audit trail (crm.AuditEntry, django-auditlog's log entry with a hash chain): read-only for everyone."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from crm.admin.mixins import ReadOnlyAdminMixin, ScaleSafeAdmin
from crm.models import AuditEntry

if admin.site.is_registered(AuditEntry):
    admin.site.unregister(AuditEntry)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, ScaleSafeAdmin):
    """The audit trail: read-only for everyone, superusers included. Edits are also caught by the chain."""

    list_display = (
        "chain_seq",
        "timestamp",
        "action",
        "content_type",
        "object_pk",
        "object_repr",
        "actor",
        "remote_addr",
    )
    list_filter = ("action",)
    search_fields = ("object_pk",)
    ordering = ("-chain_seq",)
    list_select_related = ("content_type", "actor")
    actions = None

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        term = search_term.strip()
        return (queryset.filter(object_pk=term), False) if term else (queryset, False)

    # auditlog's labels that cannot be shown as they are: serialized_data has no verbose name (its label was
    # the untranslatable "serialized data"), and changes_text has the same label as changes ("change
    # message", printed twice). Shown through labelled readers, without a migration of the fields.
    RELABELLED = {"serialized_data": "serialized_data_shown", "changes_text": "changes_text_shown"}

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = [
            self.RELABELLED.get(f, f) if isinstance(f, str) else f for f in super().get_fields(request, obj)
        ]
        return list(dict.fromkeys(fields))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [*super().get_readonly_fields(request, obj), *self.RELABELLED.values()]

    @admin.display(description=_("Serialized data"))
    def serialized_data_shown(self, obj: AuditEntry) -> Any:
        return obj.serialized_data if obj.serialized_data is not None else "-"

    @admin.display(description=_("変更内容（テキスト）"))
    def changes_text_shown(self, obj: AuditEntry) -> Any:
        return obj.changes_text or "-"
