from django.urls import path

from . import views

# Mounted at /orgs/<slug>/ by responseportal.urls.
urlpatterns = [
    path("settings/security/", views.second_factor_policy, name="second_factor_policy"),
]
