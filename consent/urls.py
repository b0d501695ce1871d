from django.urls import path

from consent import views
from consent.requests import views as request_views

app_name = "consent"

urlpatterns = [
    path("", views.privacy_notice, name="privacy"),
    path("purposes/<slug:code>/", views.purpose_history, name="purpose_history"),
    path("requests/", request_views.request_form, name="request_form"),
    path("requests/confirm/<str:token>/", request_views.request_confirm, name="request_confirm"),
]
