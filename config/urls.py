from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from config.api import api

urlpatterns = [
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/signin/", include("crm.signin.urls")),  # second factor (crm.signin.views)
    path("admin/", admin.site.urls),
    path("privacy/", include("consent.urls")),
    path("api/v1/", api.urls),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
