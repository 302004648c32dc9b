from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views
from .forms import SignInForm

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            redirect_authenticated_user=True, authentication_form=SignInForm
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("orgs/", views.org_list, name="org_list"),
    path("", include("api.urls")),
    path("", include("sso.urls")),
    path("orgs/<slug:slug>/", include("approvals.urls")),
    path("orgs/<slug:slug>/audit/", include("audit.urls")),
    path("actions/", include("actions.urls")),
    path("admin/", admin.site.urls),
]
