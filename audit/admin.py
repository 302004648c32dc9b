from django.contrib import admin

from responseportal.admin import ReadOnlyAdmin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["timestamp", "organization", "actor_username", "verb", "action_key", "source"]
    list_filter = ["verb", "source", "organization"]
    search_fields = ["actor_username", "verb", "action_key"]
    list_select_related = ["organization"]
