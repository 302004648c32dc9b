from django.urls import path

from . import (
    dashboard_views,
    email_views,
    execution_views,
    review_views,
    script_views,
    settings_views,
    views,
)

urlpatterns = [
    path("", dashboard_views.org_dashboard, name="org_dashboard"),
    path("requests/", views.request_list, name="request_list"),
    path("requests/new/", views.request_chooser, name="request_chooser"),
    path("requests/new/<slug:key>/", views.new_request, name="new_request"),
    path("requests/<uuid:uuid>/", views.request_detail, name="request_detail"),
    path("requests/<uuid:uuid>/approve/", views.approve, name="request_approve"),
    path("requests/<uuid:uuid>/reject/", views.reject, name="request_reject"),
    path("requests/<uuid:uuid>/cancel/", views.cancel, name="request_cancel"),
    path("requests/<uuid:uuid>/review/", review_views.review, name="request_review"),
    path("requests/<uuid:uuid>/undo/", review_views.undo_view, name="request_undo"),
    path("reviews/", review_views.needs_review, name="needs_review"),
    path(
        "requests/<uuid:uuid>/email-decision/<str:token>/",
        email_views.email_decision,
        name="email_decision",
    ),
    path("requests/<uuid:uuid>/end-session/", execution_views.end_session, name="end_session"),
    path("requests/<uuid:uuid>/status.json", execution_views.request_status, name="request_status"),
    path("queue/", views.queue, name="queue"),
    path("settings/approval/", settings_views.approval_settings, name="approval_settings"),
    path("scripts/", script_views.script_library, name="script_library"),
]
