from django.apps import AppConfig


class ResponsePortalConfig(AppConfig):
    name = "responseportal"
    verbose_name = "Organizations and memberships"
