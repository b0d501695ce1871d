"""The admin site: Django's, without the navigation sidebar.

The sidebar lists every model the user may open on every admin page, which means building the whole app
list (a permission check per model) and rendering it on each request: at a million customers that was
more time than the customer list's own query. The index page and the breadcrumbs remain the navigation.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest


class CrmAdminSite(AdminSite):
    enable_nav_sidebar = False

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        if self.enable_nav_sidebar:
            return super().each_context(request)
        # Django's each_context (5.2) less the app list: only the sidebar reads available_apps (the index
        # and app pages build their own app_list).
        script_name = request.META["SCRIPT_NAME"]
        site_url = script_name if self.site_url == "/" and script_name else self.site_url
        return {
            "site_title": self.site_title,
            "site_header": self.site_header,
            "site_url": site_url,
            "has_permission": self.has_permission(request),
            "available_apps": [],
            "is_popup": False,
            "is_nav_sidebar_enabled": False,
            "log_entries": self.get_log_entries(request),
        }


class CrmAdminConfig(AdminConfig):
    default_site = "config.admin_site.CrmAdminSite"
