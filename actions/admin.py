from django.contrib import admin

from .models import ResponseAction


@admin.register(ResponseAction)
class ResponseActionAdmin(admin.ModelAdmin):
    """Read-only: the catalog is defined in code and synced with `manage.py sync_catalog`."""

    list_display = ["name", "key", "category", "needs_auto_approval", "active"]
    list_filter = ["category", "needs_auto_approval", "active"]
    search_fields = ["name", "key"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
