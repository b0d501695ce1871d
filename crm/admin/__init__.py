"""The crm app's admin, by concern: customers (list, search, status and erasure actions), teams, the audit
trail, and the mixins other admins share (crm.admin.mixins). Presentation only: reads go through
restrict(), writes through the services.

Django's autodiscover imports this package; the admin pages of crm's parts (retention, integrations,
sign-in, periodic tasks) are registered at app loading (crm.apps.CrmConfig.ready), so this package and
theirs never import each other.
"""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from crm.admin import audit, customers, teams
from crm.admin.customers import CustomerAdmin
from crm.admin.display import PERSONAL
from crm.admin.mixins import (
    AccessLoggedAdminMixin,
    ReadOnlyAdminMixin,
    ScaleSafeAdmin,
    object_not_found_redirect,
)

admin.site.site_header = _("顧客管理システム（個人情報保護法・GDPR対応）")
admin.site.site_title = _("顧客管理")
admin.site.index_title = _("管理メニュー")

__all__ = [
    "PERSONAL",
    "AccessLoggedAdminMixin",
    "CustomerAdmin",
    "ReadOnlyAdminMixin",
    "ScaleSafeAdmin",
    "audit",
    "customers",
    "object_not_found_redirect",
    "teams",
]
