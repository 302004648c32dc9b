from django.urls import path

from . import views

urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("<slug:key>/", views.action_detail, name="action_detail"),
]
