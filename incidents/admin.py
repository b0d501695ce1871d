"""The incidents admin: presentation only. Reads go through restrict(), writes through incidents.services.

The list is sorted by the nearest open deadline (Incident.next_deadline_at, kept by the services); an
incident's page shows each clock that applies with its article and the time left, overdue ones in red.
Status and filings change only through the actions (services), never through the form.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import F, Field, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import format_lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm.admin.mixins import AccessLoggedAdminMixin, ReadOnlyInline, admin_page
from crm.audit.actors import request_user
from crm.classification import REGISTRY, DataClass
from crm.models import Customer
from crm.permissions import teams_open_to
from incidents import services
from incidents.models import (
    REPORT_ITEM_FIELDS,
    Incident,
    IncidentCorrectiveAction,
    IncidentFiling,
    IncidentNotice,
    IncidentScope,
    IncidentTimelineEntry,
)
from incidents.rules import JST, drill_overdue

EXEMPTIONS = {
    "encrypted": _("高度な暗号化等の措置（規則7条柱書）"),
    "pseudonymised": _("仮名加工情報のみ（法41条9項）"),
}
TRIGGERS = {
    "special_care": _("要配慮個人情報（規則7条1号）"),
    "financial_damage": _("財産的被害のおそれ（規則7条2号）"),
    "unlawful_purpose": _("不正の目的によるおそれ（規則7条3号）"),
    "over_1000": _("本人の数が1,000人を超える（規則7条4号）"),
}


ROMAN = ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix")
REPORT_FORMS = {
    "ppc_prelim": (_("個人情報保護委員会への速報"), _("個人情報保護法第26条第1項、規則第8条第1項")),
    "ppc_final": (_("個人情報保護委員会への確報"), _("個人情報保護法第26条第1項、規則第8条第2項")),
    "gdpr": (_("監督機関への個人データ侵害の通知"), _("GDPR第33条第3項")),
}


def _gdpr_nature(incident: Incident) -> str:
    classes = "、".join(str(DataClass(c).label) for c in incident.data_classes) or "—"
    return "\n".join(
        [
            incident.report_summary,
            gettext("データの分類: %(c)s") % {"c": classes},
            gettext("本人の概数: %(n)s") % {"n": incident.affected_count},
            incident.report_items,
        ]
    ).strip()


def _gdpr_measures(incident: Incident) -> str:
    return "\n".join(v for v in (incident.report_response_to_persons, incident.report_prevention) if v)


def _time_left(due: dt.datetime, now: dt.datetime) -> str:
    """Time left ("残り 2日 3時間") or past ("12時間 超過"), in whole hours: read at a glance."""
    seconds = int((due - now).total_seconds())
    hours = abs(seconds) // 3600
    days, hours = divmod(hours, 24)
    span = (
        gettext("%(d)s日 %(h)s時間") % {"d": days, "h": hours}
        if days
        else gettext("%(h)s時間") % {"h": hours}
    )
    if seconds >= 0:
        return gettext("残り %(span)s") % {"span": span}
    return gettext("%(span)s 超過") % {"span": span}


def _jst(moment: dt.datetime) -> str:
    return moment.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S JST")


class NoticeCancelForm(forms.Form):
    """The intermediate page of 「送信待ちの通知を取り消す」: the reason, kept on the incident's timeline."""

    reason = forms.CharField(
        label=_("取り消す理由"),
        max_length=services.CANCEL_REASON_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("例：郵送で通知するため、誤って登録したため。個人情報を書かないでください。"),
    )


class IncidentForm(forms.ModelForm):
    """The facts of an incident; systems and data classes chosen from the classification registry."""

    systems = forms.TypedMultipleChoiceField(label=_("関係するシステム・データ"), required=False, choices=())
    data_classes = forms.TypedMultipleChoiceField(
        label=_("関係するデータの分類"), required=False, choices=DataClass.choices
    )

    class Meta:
        model = Incident
        fields = list(services.FACT_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        systems = cast(forms.TypedMultipleChoiceField, self.fields["systems"])
        systems.choices = [(label, label) for label in sorted(REGISTRY.models)]
        systems.widget = forms.CheckboxSelectMultiple(choices=systems.choices)
        self.fields["data_classes"].widget = forms.CheckboxSelectMultiple(choices=DataClass.choices)


NOTICE_FOLLOW_UP = (
    IncidentNotice.Status.NO_ADDRESS,
    IncidentNotice.Status.FAILED,
    IncidentNotice.Status.UNKNOWN,
)


class TimelineInline(ReadOnlyInline):
    """The timeline, read-only: it is append-only (the database refuses changes)."""

    model = IncidentTimelineEntry
    fields = ("at", "actor", "kind", "from_status", "to_status", "note")
    ordering = ("at", "pk")

    def get_queryset(self, request: HttpRequest) -> QuerySet[IncidentTimelineEntry]:
        return IncidentTimelineEntry.objects.restrict(request.user, "view").select_related("actor")


class FilingInline(ReadOnlyInline):
    """Filings made, read-only: recorded by the filing actions (incidents.services.incident_file)."""

    model = IncidentFiling
    fields = ("kind", "filed_at", "filed_by", "reference", "recorded_at")
    ordering = ("filed_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[IncidentFiling]:
        return IncidentFiling.objects.restrict(request.user, "view").select_related("filed_by")


class ScopeInline(ReadOnlyInline):
    """Scopings of the affected people, read-only: their progress and counts."""

    model = IncidentScope
    fields = (
        "method",
        "status",
        "progress_display",
        "matched",
        "unmatched",
        "ambiguous",
        "invalid",
        "added",
        "created_by",
        "created_at",
    )
    ordering = ("-created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[IncidentScope]:
        return IncidentScope.objects.restrict(request.user, "view").select_related("created_by")

    @admin.display(description=_("進捗"))
    def progress_display(self, obj: IncidentScope) -> str:
        return f"{obj.progress}%"


class NoticeInline(ReadOnlyInline):
    """The notices a person must follow up, read-only: no address (to reach by post or phone, or by the public
    notice), failed, or unknown (a sender died and the backend could not say whether the e-mail left). The
    sent and pending ones are counted in the progress field, not listed (there may be 100,000)."""

    model = IncidentNotice
    verbose_name_plural = _("要対応の通知（郵送・電話・確認）")
    fields = ("customer", "status", "claimed_at", "message_id", "error")
    ordering = ("pk",)
    max_num = 0
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[IncidentNotice]:
        return (
            IncidentNotice.objects.restrict(request.user, "view")
            .filter(status__in=NOTICE_FOLLOW_UP)
            .only("pk", "incident_id", "customer_id", "status", "claimed_at", "message_id", "error")
        )


class CorrectiveActionInline(ReadOnlyInline):
    """Corrective actions, read-only here: added and completed through their own pages (services)."""

    model = IncidentCorrectiveAction
    fields = ("description", "owner", "due_on", "overdue_flag", "completed_at", "complete_link")
    ordering = ("due_on", "pk")

    def get_queryset(self, request: HttpRequest) -> QuerySet[IncidentCorrectiveAction]:
        return IncidentCorrectiveAction.objects.restrict(request.user, "view").select_related("owner")

    @admin.display(description=_("期限超過"))
    def overdue_flag(self, obj: IncidentCorrectiveAction) -> str:
        if obj.pk is None or not obj.overdue():
            return "-"
        return format_html('<strong class="incident-overdue">{}</strong>', gettext("期限超過"))

    @admin.display(description=_("操作"))
    def complete_link(self, obj: IncidentCorrectiveAction) -> str:
        if obj.pk is None or obj.completed_at is not None:
            return "-"
        url = reverse("admin:incidents_incident_action_complete", args=[obj.incident_id, obj.pk])
        return format_html('<a href="{}">{}</a>', url, gettext("完了にする"))


class CorrectiveActionForm(forms.Form):
    description = forms.CharField(label=_("内容"), widget=forms.Textarea, max_length=5000)
    owner: forms.ModelChoiceField[Any] = forms.ModelChoiceField(label=_("担当者"), queryset=None)
    due_on = forms.DateField(label=_("期限"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        owner = cast(forms.ModelChoiceField, self.fields["owner"])
        owner.queryset = get_user_model().objects.filter(is_active=True, is_staff=True)


class ConfirmForm(forms.Form):
    pass


class ScopeQueryForm(forms.Form):
    """Scoping by a query: teams, collection channel, registered between two moments (at least one)."""

    teams = forms.TypedMultipleChoiceField(label=_("チーム"), required=False, coerce=int, choices=())
    channel = forms.ChoiceField(
        label=_("取得チャネル"), required=False, choices=[("", "---------"), *Customer.Channel.choices]
    )
    created_from = forms.DateTimeField(label=_("登録日時（から）"), required=False)
    created_to = forms.DateTimeField(label=_("登録日時（まで、含まない）"), required=False)
    active_from = forms.DateTimeField(label=_("最終利用日時（から）"), required=False)
    active_to = forms.DateTimeField(label=_("最終利用日時（まで、含まない）"), required=False)
    data_classes = forms.MultipleChoiceField(
        label=_("保有するデータの分類（いずれか）"),
        required=False,
        choices=(),
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        teams = cast(forms.TypedMultipleChoiceField, self.fields["teams"])
        teams.choices = [(t.pk, t.name) for t in teams_open_to(user, "view").order_by("name")]
        held = services.held_classes()
        classes = cast(forms.MultipleChoiceField, self.fields["data_classes"])
        classes.choices = [(c, label) for c, label in DataClass.choices if c in held]


class ScopeUploadForm(forms.Form):
    file = forms.FileField(label=_("ファイル"))


def _for_each_incident(
    modeladmin: IncidentAdmin,
    request: HttpRequest,
    queryset: QuerySet[Incident],
    done: Any,
    service: Callable[..., object],
    **arguments: str,
) -> None:
    """`service` on each selected incident, by the user, with `arguments`; the user is told which were done
    (`done`) and which were refused."""
    for incident in queryset:
        try:
            service(incident=incident, actor=request_user(request), **arguments)
        except services.IncidentError as error:
            modeladmin.message_user(request, f"{incident}: {error}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"{incident}: {done}", messages.SUCCESS)


def _transition_action(to: str, label: Any) -> Any:
    def action(modeladmin: IncidentAdmin, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        _for_each_incident(modeladmin, request, queryset, label, services.incident_transition, to=to)

    action.__name__ = f"transition_{to}"
    return admin.action(description=label, permissions=["change"])(action)


def _filing_action(kind: str) -> Any:
    label = IncidentFiling.Kind(kind).label

    def action(modeladmin: IncidentAdmin, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        _for_each_incident(modeladmin, request, queryset, label, services.incident_file, kind=kind)

    action.__name__ = f"file_{kind}"
    description = format_lazy("{}: {}", _("提出を記録（現在時刻）"), label)
    return admin.action(description=description, permissions=["change"])(action)


@admin.register(Incident)
class IncidentAdmin(AccessLoggedAdminMixin, admin.ModelAdmin):
    """Breach response: the incidents the user may see (the gate), nearest deadline first."""

    form = IncidentForm
    change_list_template = "incidents/admin/change_list.html"
    list_display = ("__str__", "title", "kind", "status", "next_deadline_display", "aware_at")
    list_filter = ("status", "kind", "is_drill")
    search_fields = ("=id",)
    show_facets = admin.ShowFacets.NEVER
    inlines = [FilingInline, ScopeInline, NoticeInline, CorrectiveActionInline, TimelineInline]
    readonly_fields = (
        "status",
        "clocks_panel",
        "reportability",
        "report_links",
        "scope_link",
        "action_link",
        "notice_progress",
        "created_by",
        "created_at",
    )
    fieldsets = [
        (None, {"fields": ["title", "description", "kind", "status", "is_drill", "drill_findings"]}),
        (_("期限"), {"fields": ["clocks_panel", "reportability", "report_links"]}),
        (
            _("日時"),
            {"fields": ["occurred_at", "discovered_at", "aware_at", "processor_notified_at"]},
        ),
        (
            _("影響と報告要件（規則7条）"),
            {
                "fields": [
                    "systems",
                    "data_classes",
                    "special_care",
                    "financial_damage",
                    "unlawful_purpose",
                    "affected_count",
                    "scope_link",
                    "encrypted",
                    "pseudonymised_only",
                    "gdpr_applies",
                    "gdpr_late_reason",
                    "gdpr_high_risk",
                ]
            },
        ),
        (
            _("報告事項（規則8条1項）"),
            {
                # the corrective actions' link beside 再発防止策 (viii), before その他 (ix)
                "fields": [*REPORT_ITEM_FIELDS[:8], "action_link", REPORT_ITEM_FIELDS[8]]
            },
        ),
        (
            _("本人への通知（法26条2項・規則10条、GDPR第34条）"),
            {
                "fields": [
                    "notice_progress",
                    "public_notice_at",
                    "public_notice_where",
                    "gdpr_notice_exemption",
                    "gdpr_notice_exemption_reason",
                ]
            },
        ),
        (_("登録"), {"fields": ["created_by", "created_at"]}),
    ]
    actions = [
        _transition_action(Incident.Status.CONTAINED, _("封じ込めた")),
        _transition_action(Incident.Status.ASSESSED, _("評価した")),
        _transition_action(Incident.Status.NOTIFIED, _("報告・通知した")),
        _transition_action(Incident.Status.RECOVERED, _("復旧した")),
        _transition_action(Incident.Status.CLOSED, _("終結する")),
        _filing_action(IncidentFiling.Kind.PPC_PRELIMINARY),
        _filing_action(IncidentFiling.Kind.PPC_FINAL),
        _filing_action(IncidentFiling.Kind.GDPR_SA),
        "queue_notices",
        "pause_notices",
        "resume_notices",
        "cancel_pending_notices",
        "unknown_notices_left",
        "unknown_notices_resend",
    ]

    @admin.action(description=_("影響を受けた本人へ通知する（法26条2項）"), permissions=["change"])
    def queue_notices(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        self._each(
            request,
            queryset,
            services.incident_notices_queue,
            gettext("%(i)s: 通知%(n)s件を送信待ちにしました。"),
        )

    @admin.action(description=_("本人への通知を一時停止する"), permissions=["change"])
    def pause_notices(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        self._each(request, queryset, services.incident_notices_pause, gettext("通知を一時停止しました。"))

    @admin.action(description=_("本人への通知を再開する"), permissions=["change"])
    def resume_notices(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        self._each(request, queryset, services.incident_notices_resume, gettext("通知を再開しました。"))

    @admin.action(description=_("送信待ちの通知を取り消す（理由を記録）"), permissions=["change"])
    def cancel_pending_notices(
        self, request: HttpRequest, queryset: QuerySet[Incident]
    ) -> TemplateResponse | None:
        """Withdraw the pending notices of the chosen incidents, after a page asking for the reason."""
        form = NoticeCancelForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            self._each(
                request,
                queryset,
                functools.partial(services.incident_notices_cancel, reason=form.cleaned_data["reason"]),
                gettext("%(i)s: 送信待ちの通知%(n)s件を取り消しました。"),
            )
            return None
        return TemplateResponse(
            request,
            "incidents/admin/notices_cancel.html",
            {
                **self.admin_site.each_context(request),
                "title": gettext("送信待ちの通知を取り消す"),
                "form": form,
                "incidents": list(queryset[:50]),
                "action_name": request.POST.get("action", ""),
                "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                "opts": Incident._meta,
            },
        )

    @admin.action(description=_("送信状況不明の通知：送信済みと確認した"), permissions=["change"])
    def unknown_notices_left(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        """A person found the Message-IDs in the mail server's log: the notices are marked sent."""
        self._each(
            request,
            queryset,
            functools.partial(services.incident_notices_resolve_unknown, left=True),
            gettext("送信状況不明の通知を送信済みにしました。"),
        )

    @admin.action(description=_("送信状況不明の通知：未送信と確認したので再送する"), permissions=["change"])
    def unknown_notices_resend(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        """A person found the Message-IDs absent from the mail server's log: the notices are sent again."""
        self._each(
            request,
            queryset,
            functools.partial(services.incident_notices_resolve_unknown, left=False),
            gettext("送信状況不明の通知を再送します。"),
        )

    def _each(self, request: HttpRequest, queryset: QuerySet[Incident], service: Any, done: str) -> None:
        """Run `service` on each chosen incident and say how it went: its refusal, or `done` prefixed with
        the incident, or, when `done` names it itself, formatted with the incident (%(i)s) and the count the
        service answered (%(n)s)."""
        for incident in queryset:
            try:
                result = service(incident=incident, actor=request_user(request))
            except services.IncidentError as error:
                self.message_user(request, f"{incident}: {error}", messages.ERROR)
            else:
                named = "%(i)s" in done
                text = done % {"i": incident, "n": result} if named else f"{incident}: {done}"
                self.message_user(request, text, messages.SUCCESS)

    @admin.display(description=_("送信状況"))
    def notice_progress(self, obj: Incident) -> str:
        if obj.pk is None:
            return "-"
        counts = obj.notice_counts()
        total = sum(counts.values())
        if not total:
            return gettext("通知は登録されていません。")
        open_ = counts.get(IncidentNotice.Status.PENDING, 0) + counts.get(IncidentNotice.Status.SENDING, 0)
        done = total - open_
        parts = format_html_join(
            "、",
            "{}: {}",
            [(label, counts[value]) for value, label in IncidentNotice.Status.choices if counts.get(value)],
        )
        state = gettext("一時停止中") if obj.notices_paused else ""
        return format_html(
            '<progress class="incident-notice-progress" max="{}" value="{}"></progress> {}% {}（{}）',
            total,
            done,
            done * 100 // total,
            state,
            parts,
        )

    class Media:
        css = {"all": ("incidents/admin.css",)}

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """The list, with the last drill and a warning once twelve months have passed without one."""
        last = (
            Incident.objects.restrict(request.user, "view")
            .filter(is_drill=True)
            .order_by("-aware_at")
            .values_list("aware_at", flat=True)
            .first()
        )
        context = {
            **(extra_context or {}),
            "last_drill": _jst(last) if last else None,
            "drill_overdue": drill_overdue(last, timezone.now()),
        }
        return super().changelist_view(request, extra_context=context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Incident]:
        return Incident.objects.restrict(request.user, "view").order_by(
            F("next_deadline_at").asc(nulls_last=True), "-aware_at", "pk"
        )

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        return [F("next_deadline_at").asc(nulls_last=True), "-aware_at"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or Incident.objects.restrict(request.user, "change").filter(pk=obj.pk).exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # an incident is evidence: closed, never deleted

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "<int:incident_id>/scope/",
                self.admin_site.admin_view(self.scope_view),
                name="incidents_incident_scope",
            ),
            path(
                "<int:incident_id>/actions/add/",
                self.admin_site.admin_view(self.action_add_view),
                name="incidents_incident_action_add",
            ),
            path(
                "<int:incident_id>/actions/<int:action_id>/complete/",
                self.admin_site.admin_view(self.action_complete_view),
                name="incidents_incident_action_complete",
            ),
            path(
                "<int:incident_id>/report/<str:form>/",
                self.admin_site.admin_view(self.report_view),
                name="incidents_incident_report",
            ),
        ]
        return extra + super().get_urls()

    def scope_view(self, request: HttpRequest, incident_id: int) -> HttpResponse:
        """Start scoping the affected people by a query or an uploaded list (incidents.services)."""
        incident = get_object_or_404(Incident.objects.restrict(request.user, "change"), pk=incident_id)
        if not request.user.has_perm("incidents.add_incidentscope") and not request.user.is_superuser:
            raise PermissionDenied
        posted = request.method == "POST"
        query_form = ScopeQueryForm(
            request.POST if posted and "by_query" in request.POST else None, user=request.user
        )
        upload_form = ScopeUploadForm(
            request.POST if posted and "by_upload" in request.POST else None,
            request.FILES if posted and "by_upload" in request.POST else None,
        )
        try:
            if query_form.is_bound and query_form.is_valid():
                data = query_form.cleaned_data
                services.incident_scope_by_query(
                    incident=incident,
                    actor=request_user(request),
                    team_ids=data["teams"],
                    channel=data["channel"],
                    created_from=data["created_from"],
                    created_to=data["created_to"],
                    active_from=data["active_from"],
                    active_to=data["active_to"],
                    data_classes=data["data_classes"],
                )
                return self._scope_started(request, incident)
            if upload_form.is_bound and upload_form.is_valid():
                upload = upload_form.cleaned_data["file"]
                if upload.size > services.UPLOAD_MAX_BYTES:
                    raise services.IncidentError(gettext("ファイルが大きすぎます（8MBまで）。"))
                services.incident_scope_by_upload(
                    incident=incident, actor=request_user(request), data=upload.read()
                )
                return self._scope_started(request, incident)
        except services.IncidentError as error:
            messages.error(request, str(error))
        return admin_page(
            self,
            request,
            "incidents/admin/scope.html",
            gettext("影響範囲の特定"),
            incident=incident,
            query_form=query_form,
            upload_form=upload_form,
        )

    def _form_page(
        self, request: HttpRequest, incident: Incident, form: Any, title: str, intro: str = ""
    ) -> Any:
        return admin_page(
            self, request, "incidents/admin/form.html", title, intro=intro, incident=incident, form=form
        )

    def action_add_view(self, request: HttpRequest, incident_id: int) -> HttpResponse:
        """Record a corrective action (incidents.services.incident_action_add)."""
        incident = get_object_or_404(Incident.objects.restrict(request.user, "change"), pk=incident_id)
        form = CorrectiveActionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.incident_action_add(
                    incident=incident, actor=request_user(request), **form.cleaned_data
                )
            except services.IncidentError as error:
                messages.error(request, str(error))
            else:
                return HttpResponseRedirect(reverse("admin:incidents_incident_change", args=[incident.pk]))
        return self._form_page(request, incident, form, gettext("是正措置を登録"))

    def action_complete_view(self, request: HttpRequest, incident_id: int, action_id: int) -> HttpResponse:
        """Mark a corrective action done (services.incident_action_complete), after a confirmation."""
        incident = get_object_or_404(Incident.objects.restrict(request.user, "change"), pk=incident_id)
        action = get_object_or_404(IncidentCorrectiveAction.objects.filter(incident=incident), pk=action_id)
        if request.method == "POST":
            try:
                services.incident_action_complete(action=action, actor=request_user(request))
            except services.IncidentError as error:
                messages.error(request, str(error))
            return HttpResponseRedirect(reverse("admin:incidents_incident_change", args=[incident.pk]))
        return self._form_page(
            request, incident, ConfirmForm(), gettext("是正措置を完了にする"), action.description
        )

    def report_view(self, request: HttpRequest, incident_id: int, form: str) -> HttpResponse:
        """A printable report: PPC 速報 / 確報 with the nine items of 規則8(1) in their order, or the GDPR
        Art. 33(3) notification. The reporter is the company (settings.CRM_COMPANY), not a staff member."""
        incident = get_object_or_404(Incident.objects.restrict(request.user, "view"), pk=incident_id)
        if form not in REPORT_FORMS:
            raise Http404
        title_label, basis = REPORT_FORMS[form]
        title = str(title_label)
        if incident.is_drill:
            title = gettext("【訓練】%(t)s（実際の報告ではありません）") % {"t": title}
        if form == "gdpr":
            items = [
                ("(a)", gettext("侵害の性質（本人・記録の種類と概数を含む）"), _gdpr_nature(incident)),
                ("(b)", gettext("データ保護責任者等の連絡先"), settings.CRM_COMPANY["contact"]),
                ("(c)", gettext("生じうる結果"), incident.report_secondary_damage),
                ("(d)", gettext("講じた又は講じる予定の措置"), _gdpr_measures(incident)),
            ]
            if incident.gdpr_late():
                items.append(("", gettext("遅延の理由（GDPR第33条1項）"), incident.gdpr_late_reason))
        else:
            items = [
                (
                    f"({roman})",
                    str(cast("Field[Any, Any]", Incident._meta.get_field(name)).verbose_name),
                    getattr(incident, name),
                )
                for roman, name in zip(ROMAN, REPORT_ITEM_FIELDS, strict=True)
            ]
        return TemplateResponse(
            request,
            "incidents/admin/report.html",
            {
                "title": title,
                "basis": basis,
                "incident": incident,
                "company": settings.CRM_COMPANY,
                "aware_at": _jst(incident.aware_at),
                "items": items,
                "printed_at": _jst(timezone.now()),
            },
        )

    def _scope_started(self, request: HttpRequest, incident: Incident) -> HttpResponse:
        messages.success(request, gettext("影響範囲の特定を開始しました。進捗はこの画面に表示されます。"))
        return HttpResponseRedirect(reverse("admin:incidents_incident_change", args=[incident.pk]))

    @admin.display(description=_("報告書（印刷用）"))
    def report_links(self, obj: Incident) -> str:
        if obj.pk is None:
            return "-"
        return format_html_join(
            " | ",
            '<a href="{}" target="_blank">{}</a>',
            [
                (reverse("admin:incidents_incident_report", args=[obj.pk, form]), title)
                for form, (title, _basis) in REPORT_FORMS.items()
            ],
        )

    @admin.display(description=_("是正措置"))
    def action_link(self, obj: Incident) -> str:
        if obj.pk is None or obj.status == Incident.Status.CLOSED:
            return "-"
        url = reverse("admin:incidents_incident_action_add", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, gettext("是正措置を登録する"))

    @admin.display(description=_("影響範囲の特定"))
    def scope_link(self, obj: Incident) -> str:
        if obj.pk is None or obj.status == Incident.Status.CLOSED:
            return "-"
        url = reverse("admin:incidents_incident_scope", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, gettext("条件またはファイルで特定する"))

    def save_model(self, request: HttpRequest, obj: Incident, form: Any, change: bool) -> None:
        facts = {name: form.cleaned_data[name] for name in services.FACT_FIELDS if name in form.cleaned_data}
        if change:
            changed = {name: facts[name] for name in form.changed_data if name in facts}
            if changed:
                services.incident_update(incident=obj, actor=request_user(request), **changed)
            return
        created = services.incident_create(actor=request_user(request), **facts)
        obj.pk = created.pk

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # The model form is never saved (save_model calls the services), so it has no save_m2m; the inlines
        # are read-only, and saving them writes nothing but tells the change message so.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    @admin.display(description=_("直近の期限"), ordering="next_deadline_at")
    def next_deadline_display(self, obj: Incident) -> str:
        if obj.next_deadline_at is None:
            return "-"
        now = timezone.now()
        text = f"{_jst(obj.next_deadline_at)}（{_time_left(obj.next_deadline_at, now)}）"
        if obj.next_deadline_at < now:
            return format_html('<span class="incident-overdue">{}</span>', text)
        return text

    @admin.display(description=_("報告期限"))
    def clocks_panel(self, obj: Incident) -> str:
        if obj.pk is None:
            return "-"
        deadlines = obj.deadlines()
        if not deadlines:
            return gettext("適用される報告期限はありません。")
        now = timezone.now()
        rows = []
        for deadline in deadlines:
            if deadline.filing is not None:
                state = gettext("提出済み %(at)s") % {"at": _jst(deadline.filing.filed_at)}
            else:
                state = _time_left(deadline.due, now)
            css = "incident-clock overdue" if deadline.overdue(now) else "incident-clock"
            rows.append((css, str(deadline.label), _jst(deadline.due), state))
        return format_html(
            '<table class="incident-clocks">{}</table>',
            format_html_join("", '<tr class="{}"><th>{}</th><td>{}</td><td>{}</td></tr>', rows),
        )

    @admin.display(description=_("報告対象の判定（法26条・規則7条）"))
    def reportability(self, obj: Incident) -> str:
        if obj.pk is None:
            return "-"
        text = self._appi_reportability(obj)
        if obj.gdpr_subject_notice_missing():
            text += " / " + gettext(
                "GDPR第34条：高いリスクあり。本人への通知か、個別に通知しない根拠と理由の記録が必要です"
            )
        return text

    @staticmethod
    def _appi_reportability(obj: Incident) -> str:
        clocks = obj.clocks()
        triggers = "、".join(str(TRIGGERS[t]) for t in clocks.appi_triggers) or gettext("なし")
        if clocks.appi_reportable:
            return gettext("個人情報保護委員会への報告対象（該当: %(t)s）") % {"t": triggers}
        if clocks.appi_exemption:
            return gettext("報告対象外（該当: %(t)s。ただし %(e)s）") % {
                "t": triggers,
                "e": EXEMPTIONS[clocks.appi_exemption],
            }
        return gettext("報告対象外（規則7条の事態に該当しない）")
