from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Sign-in (with its second-factor step), the Security page and step-up.
    path("accounts/", include("accounts.urls")),
    path("orgs/", views.org_list, name="org_list"),
    path("", include("api.urls")),
    path("", include("sso.urls")),
    path("orgs/<slug:slug>/", include("accounts.org_urls")),
    path("orgs/<slug:slug>/", include("approvals.urls")),
    path("orgs/<slug:slug>/audit/", include("audit.urls")),
    path("actions/", include("actions.urls")),
    path("admin/", admin.site.urls),
]
