"""The Trend Vision One v3.0 compatible routes, at the host root (included by api.urls)."""

from django.urls import path, re_path

from . import trend, trend_views

urlpatterns = [
    path(
        f"v3.0/response/{call.path}",
        trend_views.CallView.as_view(call=call),
        name=f"trend_{call.action_key}",
    )
    for call in trend.CALLS
]
urlpatterns += [
    path("v3.0/response/tasks/<str:task_id>", trend_views.TaskView.as_view(), name="trend_task"),
    # Everything else under /v3.0, trailing slashes included: never a redirect, always JSON.
    re_path(r"^v3\.0(?:/.*)?$", trend_views.UnsupportedView.as_view(), name="trend_unsupported"),
]
