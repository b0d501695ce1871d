from django.contrib import admin
from django.http import HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from config.api import api

urlpatterns = [
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/signin/", include("crm.signin.urls")),  # second factor (crm.signin.views)
    path("admin/", admin.site.urls),
    path("privacy/", include("consent.urls")),
    path("api/v1/", api.urls),
    # Browsers ask for /favicon.ico whatever the page's <link rel="icon"> says. The static URL is resolved
    # per request: at import time the production manifest may not exist yet (`check` before collectstatic).
    path("favicon.ico", lambda request: HttpResponsePermanentRedirect(static("crm/favicon.svg"))),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]

# The admin's refusals and missing pages in its own layout and the user's language (config/errors.py).
handler403 = "config.errors.permission_denied"
handler404 = "config.errors.page_not_found"
