"""Teams and their memberships. A membership is saved and removed through crm.services (it grants and
revokes the team's object permissions)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from crm import services
from crm.admin.mixins import acting_user
from crm.models import Team, TeamMembership


class MembershipInline(admin.TabularInline):
    model = TeamMembership
    extra = 0
    can_delete = False
    readonly_fields = ("user", "role", "created_at")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    """Teams (business units). Memberships are managed on their own page, through services."""

    list_display = ("code", "name", "created_at")
    search_fields = ("code", "name")
    inlines = [MembershipInline]

    def has_delete_permission(self, request: HttpRequest, obj: Team | None = None) -> bool:
        return False


@admin.register(TeamMembership)
class TeamMembershipAdmin(admin.ModelAdmin):
    """Who belongs to which team; saving grants the team object permissions (crm.services)."""

    list_display = ("team", "user", "role", "created_at")
    list_filter = ("role",)
    autocomplete_fields = ("team",)
    raw_id_fields = ("user",)

    def save_model(self, request: HttpRequest, obj: TeamMembership, form: Any, change: bool) -> None:
        saved = services.team_member_add(
            team=obj.team, user=obj.user, role=obj.role, actor=acting_user(request)
        )
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: TeamMembership) -> None:
        services.team_member_remove(membership=obj, actor=acting_user(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[TeamMembership]) -> None:
        for membership in queryset:
            services.team_member_remove(membership=membership, actor=acting_user(request))
