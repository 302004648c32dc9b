from django.apps import AppConfig


class ResponsePortalConfig(AppConfig):
    name = "responseportal"
    verbose_name = "Organizations and memberships"

    def ready(self) -> None:
        from . import middleware  # noqa: F401  (connects the sign-in receiver)
