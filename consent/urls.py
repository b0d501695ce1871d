from django.urls import path

from consent import views

app_name = "consent"

urlpatterns = [
    path("", views.privacy_notice, name="privacy"),
    path("purposes/<slug:code>/", views.purpose_history, name="purpose_history"),
]
