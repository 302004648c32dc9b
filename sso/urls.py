from django.urls import path

from . import views

urlpatterns = [
    path("sso/", views.choose, name="sso_choose"),
    path("sso/<slug:slug>/login/", views.start, name="sso_login"),
    path("sso/<slug:slug>/callback/", views.callback, name="sso_callback"),
    path("orgs/<slug:slug>/settings/sso/", views.provider_settings, name="sso_settings"),
]
