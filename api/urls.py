from django.urls import include, path

from . import views

# Mounted at the site root by responseportal.urls.
urlpatterns = [
    path("account/api-tokens/", views.token_list, name="api_tokens"),
    path("account/api-tokens/<int:pk>/revoke/", views.revoke_own, name="api_token_revoke"),
    path(
        "orgs/<slug:slug>/api-tokens/",
        views.organization_tokens,
        name="organization_api_tokens",
    ),
    path(
        "orgs/<slug:slug>/api-tokens/<int:pk>/revoke/",
        views.revoke_in_organization,
        name="organization_api_token_revoke",
    ),
]

urlpatterns += [
    path("api/v1/", include("api.v1_urls")),
    # Trend Vision One v3.0 compatible calls, at the host root as that API has them.
    path("", include("api.trend_urls")),
]
