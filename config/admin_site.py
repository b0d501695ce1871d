"""The admin site: Django's, without the navigation sidebar.

The sidebar repeats the index's list of every model on every admin page; the index page and the
breadcrumbs remain the navigation. Turned off with Django's own switch (AdminSite.enable_nav_sidebar):
the site's context and rendering are Django's.
"""

from __future__ import annotations

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig


class CrmAdminSite(AdminSite):
    enable_nav_sidebar = False


class CrmAdminConfig(AdminConfig):
    default_site = "config.admin_site.CrmAdminSite"
