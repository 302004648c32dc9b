from django.contrib import admin

from responseportal.admin import ReadOnlyAdmin

from .models import ActionRequest, Approval, ApprovalSettings, RequestTarget, Script


class RequestTargetInline(admin.TabularInline):
    model = RequestTarget
    fields = ["position", "kind", "value", "status", "message"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ApprovalInline(admin.TabularInline):
    """Who approved a request needing two or three admins, and when."""

    model = Approval
    fields = ["admin", "approved_at", "source", "comment"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ActionRequest)
class ActionRequestAdmin(ReadOnlyAdmin):
    list_display = ["uuid", "organization", "action", "requester", "status", "submitted_at"]
    list_filter = ["status", "approval_mode", "organization", "action"]
    search_fields = ["uuid", "summary", "requester__username"]
    list_select_related = ["organization", "action", "requester"]
    date_hierarchy = "submitted_at"
    inlines = [RequestTargetInline, ApprovalInline]


@admin.register(ApprovalSettings)
class ApprovalSettingsAdmin(ReadOnlyAdmin):
    list_display = ["organization", "auto_approval_enabled", "scope_mode", "updated_at"]
    list_select_related = ["organization"]


@admin.register(Script)
class ScriptAdmin(ReadOnlyAdmin):
    list_display = ["name", "organization", "language", "size", "uploaded_by", "uploaded_at"]
    list_select_related = ["organization", "uploaded_by"]
    exclude = ["content"]
