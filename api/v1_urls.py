from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import rest

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api_schema", template_name="api/swagger_ui.html"
        ),
        name="api_docs",
    ),
    path("orgs/<slug:slug>/actions/", rest.catalog, name="api_catalog"),
]

urlpatterns += [
    path("orgs/<slug:slug>/requests/", rest.requests, name="api_requests"),
    path("orgs/<slug:slug>/requests/<uuid:uuid>/", rest.request_detail, name="api_request"),
    path("orgs/<slug:slug>/requests/<uuid:uuid>/cancel/", rest.cancel, name="api_request_cancel"),
    path(
        "orgs/<slug:slug>/requests/<uuid:uuid>/approve/",
        rest.approve,
        name="api_request_approve",
    ),
    path("orgs/<slug:slug>/requests/<uuid:uuid>/reject/", rest.reject, name="api_request_reject"),
]

urlpatterns += [
    path(
        "orgs/<slug:slug>/settings/approval/",
        rest.approval_settings,
        name="api_approval_settings",
    ),
]

urlpatterns += [
    path("orgs/<slug:slug>/audit-events/", rest.audit_events, name="api_audit_events"),
]
