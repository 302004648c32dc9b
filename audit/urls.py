from django.urls import path

from . import views

urlpatterns = [
    path("", views.audit_log, name="audit_log"),
    path("export.csv", views.audit_export, name="audit_export"),
    path("<int:pk>/", views.audit_event, name="audit_event"),
]
