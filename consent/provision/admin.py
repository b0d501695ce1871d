"""Admin of recipients, processors' contracts and audits, cross-border bases, provision and receipt records,
and the data map with its pages (graph, record of processing, data dictionary). Presentation only: provision
and receipt records are written by consent.provision.services, never edited; flags come from one selector.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from consent.models import Purpose
from consent.provision import dictionary, ropa, rules, selectors, services
from consent.provision.models import (
    DATA_CATEGORY_CHOICES,
    CrossBorderBasis,
    DataFlow,
    DataSystem,
    ProcessorAudit,
    ProcessorContract,
    ProvisionBasis,
    ProvisionRecord,
    ReceiptRecord,
    Recipient,
)
from consent.provision.svg import graph_svg
from crm.admin.mixins import (
    AccessLoggedAdminMixin,
    ModelAdminBase,
    NoEditAdminMixin,
    ReadOnlyAdminMixin,
    ScaleSafeAdmin,
    admin_page,
)
from crm.audit.actors import request_user
from crm.classification import REGISTRY
from crm.models import Customer

FLAG_LABELS = {
    rules.FLAG_NO_CONTRACT: _("委託契約なし"),
    rules.FLAG_MISSING_CLAUSES: _("契約条項の不足（GDPR第28条3項・法第25条）"),
    rules.FLAG_CONTRACT_EXPIRED: _("契約期限切れ"),
    rules.FLAG_NO_AUDIT: _("監査の記録なし"),
    rules.FLAG_AUDIT_OVERDUE: _("監査期限超過"),
    rules.FLAG_NO_TRANSFER_BASIS: _("外国移転の根拠なし（法第28条）"),
}
MAX_IDS_TEXT = 600_000  # characters of a pasted id list (about 50,000 ids)


class CategoriesField(forms.MultipleChoiceField):
    widget = forms.CheckboxSelectMultiple


class CategoriesFormMixin(forms.ModelForm):
    """Data categories as checkboxes of the registry's classes."""

    data_categories = CategoriesField(label=_("データの区分"), choices=DATA_CATEGORY_CHOICES, required=False)


class RecipientForm(CategoriesFormMixin):
    class Meta:
        model = Recipient
        fields = (
            "name",
            "kind",
            "country",
            "contact",
            "data_categories",
            "purposes",
            "sub_processing_allowed",
            "sub_processors",
            "joint_items",
            "joint_scope",
            "joint_purpose",
            "joint_manager",
            "joint_published_on",
        )


class ContractInline(admin.StackedInline):
    model = ProcessorContract
    extra = 0
    fields = (
        ("signed_on", "expires_on", "document_ref"),
        *rules.CONTRACT_CLAUSES,
    )


class AuditInline(admin.TabularInline):
    model = ProcessorAudit
    extra = 0
    fields = ("audited_on", "result", "findings", "next_due_on")


class BasisInline(admin.StackedInline):
    model = CrossBorderBasis
    fk_name = "recipient"
    extra = 0
    fields = (
        ("kind", "effective_on", "withdrawn_on"),
        "purpose",
        "country_regime",
        "recipient_measures",
        "safeguards",
        ("last_checked_on", "next_check_on"),
    )


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    """Recipients with their flags on today's date (JST): the one selector (selectors.with_flag_facts and
    flags_of) computes them, so the list and a compliance checklist say the same."""

    form = RecipientForm
    show_facets = admin.ShowFacets.NEVER
    list_display = ("name", "kind", "country", "flag_list")
    list_filter = ("kind",)
    search_fields = ("name",)
    filter_horizontal = ("purposes", "sub_processors")
    inlines = (ContractInline, AuditInline, BasisInline)
    fieldsets = (
        (None, {"fields": ("name", "kind", "country", "contact", "data_categories", "purposes")}),
        (_("再委託"), {"fields": ("sub_processing_allowed", "sub_processors")}),
        (
            _("共同利用（法第27条5項3号）"),
            {
                "fields": (
                    "joint_items",
                    "joint_scope",
                    "joint_purpose",
                    "joint_manager",
                    "joint_published_on",
                )
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Recipient]:
        return selectors.with_flag_facts(
            Recipient.objects.restrict(request.user, "view"), on=selectors.today()
        )

    @admin.display(description=_("要対応"))
    def flag_list(self, obj: Recipient) -> str:
        flags = selectors.flags_of(obj, on=selectors.today())
        if not flags:
            return "-"
        return format_html_join(
            " ", '<span class="crm-flag">{}</span>', [(str(FLAG_LABELS[f]),) for f in flags]
        )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:recipient_id>/provide/",
                self.admin_site.admin_view(self.provide_view),
                name="consent_recipient_provide",
            ),
            *super().get_urls(),
        ]

    def provide_view(self, request: HttpRequest, recipient_id: int) -> HttpResponseBase:
        """Export customers' data to this recipient: the provision record first (services.provision_export),
        then the CSV. Refusals (no basis, no consent …) are shown on the form; nothing leaves."""
        if not request.user.has_perm("consent.add_provisionrecord"):
            raise PermissionDenied
        recipient = get_object_or_404(Recipient.objects.restrict(request.user, "view"), pk=recipient_id)
        form = ProvideForm(request.POST or None, recipient=recipient)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                record, rows = services.provision_export(
                    actor=request_user(request),
                    recipient=recipient,
                    customer_ids=data["customer_ids"],
                    fields=data["items"],
                    basis=data["basis"],
                    purpose_code=data["purpose"].code if data["purpose"] else "",
                    opt_out_notified_on=data["opt_out_notified_on"],
                    contract_id=data["contract"].pk if data["contract"] else None,
                    batch=data["batch"],
                )
            except ValidationError as exc:
                form.add_error(None, " ".join(exc.messages))
            else:
                return csv_response(f"provision-{record.pk}.csv", rows)
        return admin_page(
            self,
            request,
            "consent/provision/form.html",
            gettext("%(name)s への提供（第三者提供記録を作成して書き出し）") % {"name": recipient},
            form=form,
            submit_label=gettext("記録して書き出す"),
        )

    @admin.display(description=_("提供"))
    def provide_link(self, obj: Recipient) -> str:
        url = reverse("admin:consent_recipient_provide", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, gettext("記録して書き出す"))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("provide_link",) if obj is not None else ()

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None:
            fieldsets.append((_("第三者提供（法第29条）"), {"fields": ("provide_link",)}))
        return fieldsets


def parse_ids(text: str) -> list[int]:
    """Customer ids pasted as numbers separated by spaces, commas or new lines."""
    if len(text) > MAX_IDS_TEXT:
        raise ValidationError(_("顧客IDが多すぎます。"))
    parts = text.replace(",", " ").split()
    if not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts):
        raise ValidationError(_("顧客IDは数字で入力してください。"))
    return [int(p) for p in parts]


class CustomerIdsField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 3})

    def clean(self, value: Any) -> list[int]:
        ids = parse_ids(super().clean(value) or "")
        if not ids:
            raise ValidationError(_("顧客IDを入力してください。"))
        return ids


def customer_field_choices() -> list[tuple[str, str]]:
    label = Customer._meta.label
    return [
        (f.name, str(f.verbose_name))
        for f in Customer._meta.concrete_fields
        if f.name in REGISTRY.personal_fields(label)
    ]


class ProvideForm(forms.Form):
    customer_ids = CustomerIdsField(label=_("顧客ID"), help_text=_("空白・カンマ・改行で区切って入力"))
    items = forms.MultipleChoiceField(
        label=_("提供する項目"), choices=customer_field_choices, widget=forms.CheckboxSelectMultiple
    )
    basis = forms.ChoiceField(label=_("根拠"), choices=ProvisionBasis.choices)
    purpose = forms.ModelChoiceField(
        label=_("同意の利用目的"), queryset=Purpose.objects.all(), required=False
    )
    opt_out_notified_on = forms.DateField(label=_("個人情報保護委員会への届出日"), required=False)
    contract = forms.ModelChoiceField(
        label=_("記録に代える契約"), queryset=ProcessorContract.objects.none(), required=False
    )
    batch = forms.BooleanField(label=_("一括記録（継続・反復の提供、規則19条2項）"), required=False)

    def __init__(self, *args: Any, recipient: Recipient, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        contract = cast(forms.ModelChoiceField, self.fields["contract"])  # declared so on the class
        contract.queryset = recipient.contracts.all()


def csv_response(filename: str, rows: Iterable[Iterable[str]]) -> StreamingHttpResponse:
    """A CSV download (UTF-8 with BOM, so spreadsheet software reads the Japanese)."""

    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())

    def lines() -> Iterator[str]:
        yield "\ufeff"
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- provision and receipt records --------------------------------------------------------------------


class SubjectCountMixin(ModelAdminBase):
    def get_queryset(self, request: HttpRequest) -> Any:
        return self.model.objects.restrict(request.user, "view").annotate(people=Count("subjects"))

    @admin.display(description=_("本人の数"))
    def people(self, obj: Any) -> int:
        return int(obj.people)


@admin.register(ProvisionRecord)
class ProvisionRecordAdmin(SubjectCountMixin, AccessLoggedAdminMixin, ReadOnlyAdminMixin, ScaleSafeAdmin):
    """Provision records are written by services.provision_record only (before data leaves): read-only."""

    list_display = (
        "__str__",
        "recipient",
        "basis",
        "first_provided_on",
        "last_provided_on",
        "people",
        "keep_until",
    )
    readonly_fields = ("people",)
    exclude = ("customers",)


class ReceiptForm(forms.Form):
    provider_name = forms.CharField(label=_("提供者の氏名又は名称"), max_length=200)
    provider_address = forms.CharField(label=_("提供者の住所"), max_length=300)
    provider_representative = forms.CharField(label=_("法人の代表者の氏名"), max_length=200, required=False)
    acquisition = forms.CharField(
        label=_("提供者による取得の経緯（法第30条1項2号）"), max_length=2000, widget=forms.Textarea
    )
    customer_ids = CustomerIdsField(label=_("顧客ID"), help_text=_("空白・カンマ・改行で区切って入力"))
    data_items = forms.MultipleChoiceField(
        label=_("受領した項目"), choices=customer_field_choices, widget=forms.CheckboxSelectMultiple
    )
    basis = forms.ChoiceField(label=_("根拠"), choices=ProvisionBasis.choices)
    received_on = forms.DateField(label=_("受領日"))
    contract_as_record = forms.BooleanField(label=_("契約書等を記録に代える（規則23条3項）"), required=False)


@admin.register(ReceiptRecord)
class ReceiptRecordAdmin(SubjectCountMixin, AccessLoggedAdminMixin, NoEditAdminMixin, ScaleSafeAdmin):
    """Receipt records (APPI 30): "追加" is their own form, which calls services.receipt_record; a written
    record is never edited."""

    list_display = ("__str__", "provider_name", "received_on", "people", "keep_until")
    exclude = ("customers",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in ReceiptRecord._meta.fields] + ["people"]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ReceiptForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                record = services.receipt_record(
                    actor=request_user(request),
                    provider_name=data["provider_name"],
                    provider_address=data["provider_address"],
                    provider_representative=data["provider_representative"],
                    acquisition=data["acquisition"],
                    customer_ids=data["customer_ids"],
                    data_items=[f"{Customer._meta.label}.{n}" for n in data["data_items"]],
                    basis=data["basis"],
                    received_on=data["received_on"],
                    contract_as_record=data["contract_as_record"],
                )
            except ValidationError as exc:
                form.add_error(None, " ".join(exc.messages))
            else:
                messages.success(request, gettext("受領記録を作成しました。"))
                return HttpResponseRedirect(reverse("admin:consent_receiptrecord_change", args=[record.pk]))
        return admin_page(
            self,
            request,
            "consent/provision/form.html",
            gettext("第三者からの受領記録（法第30条）"),
            form=form,
            submit_label=gettext("記録する"),
        )


# --- the data map ---------------------------------------------------------------------------------------


class SystemForm(CategoriesFormMixin):
    class Meta:
        model = DataSystem
        fields = (
            "name",
            "is_this_crm",
            "location",
            "country",
            "data_owner",
            "steward",
            "data_categories",
            "security_measures",
            "recipient",
        )


class FlowForm(CategoriesFormMixin):
    class Meta:
        model = DataFlow
        fields = (
            "source",
            "target_system",
            "target_recipient",
            "purpose",
            "frequency",
            "data_categories",
            "description",
        )


@admin.register(DataFlow)
class DataFlowAdmin(admin.ModelAdmin):
    form = FlowForm
    list_display = ("__str__", "source", "target_system", "target_recipient", "purpose", "frequency")

    def get_queryset(self, request: HttpRequest) -> QuerySet[DataFlow]:
        return DataFlow.objects.restrict(request.user, "view").select_related(
            "source", "target_system", "target_recipient", "purpose"
        )


@admin.register(DataSystem)
class DataSystemAdmin(admin.ModelAdmin):
    """Systems of the data map, and the map's pages: the graph (cytoscape.js, static/consent/vendor), its
    SVG, the record of processing (GDPR Art. 30) and the data dictionary (readable by all staff)."""

    form = SystemForm
    list_display = ("name", "location", "country", "data_owner", "steward", "categories")
    change_list_template = "consent/provision/system_change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[DataSystem]:
        return DataSystem.objects.restrict(request.user, "view")

    @admin.display(description=_("データの区分"))
    def categories(self, obj: DataSystem) -> str:
        labels = dict(DATA_CATEGORY_CHOICES)
        return "、".join(str(labels.get(c, c)) for c in selectors.system_categories(obj)) or "-"

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("map/", view(self.map_view), name="consent_data_map"),
            path("map.json", view(self.map_json_view), name="consent_data_map_json"),
            path("map.svg", view(self.map_svg_view), name="consent_data_map_svg"),
            path("ropa/", view(self.ropa_view), name="consent_ropa"),
            path("ropa.csv", view(self.ropa_csv_view), name="consent_ropa_csv"),
            path("dictionary/", view(self.dictionary_view), name="consent_data_dictionary"),
            path("dictionary.csv", view(self.dictionary_csv_view), name="consent_data_dictionary_csv"),
            *super().get_urls(),
        ]

    def _require_view(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def map_view(self, request: HttpRequest) -> HttpResponse:
        self._require_view(request)
        return admin_page(self, request, "consent/provision/data_map.html", gettext("データマップ"))

    def map_json_view(self, request: HttpRequest) -> HttpResponse:
        self._require_view(request)
        graph = selectors.data_map_graph(user=request.user)
        body = json.dumps({"nodes": graph.nodes, "edges": graph.edges}, ensure_ascii=False)
        return HttpResponse(body, content_type="application/json")

    def map_svg_view(self, request: HttpRequest) -> HttpResponse:
        self._require_view(request)
        response = HttpResponse(
            graph_svg(selectors.data_map_graph(user=request.user)), content_type="image/svg+xml"
        )
        response["Content-Disposition"] = 'attachment; filename="data-map.svg"'
        return response

    def ropa_view(self, request: HttpRequest) -> HttpResponse:
        self._require_view(request)
        return TemplateResponse(
            request,
            "consent/provision/ropa.html",
            {
                "title": gettext("処理活動の記録（GDPR第30条）"),
                "company": settings.CRM_COMPANY,
                "entries": ropa.ropa_entries(user=request.user),
                "printed_on": selectors.today(),
            },
        )

    def ropa_csv_view(self, request: HttpRequest) -> HttpResponseBase:
        self._require_view(request)
        rows = [list(ropa.ROPA_HEADER), *ropa.ropa_csv_rows(ropa.ropa_entries(user=request.user))]
        return csv_response("ropa.csv", rows)

    def dictionary_view(self, request: HttpRequest) -> HttpResponse:
        # Every staff member may read the dictionary (admin_view already requires staff).
        query = request.GET.get("q", "")[:100]
        return admin_page(
            self,
            request,
            "consent/provision/dictionary.html",
            gettext("データ辞書"),
            rows=dictionary.dictionary_rows(query),
            query=query,
        )

    def dictionary_csv_view(self, request: HttpRequest) -> HttpResponseBase:
        rows = [
            list(dictionary.DICTIONARY_HEADER),
            *dictionary.dictionary_csv_rows(dictionary.dictionary_rows()),
        ]
        return csv_response("data-dictionary.csv", rows)
