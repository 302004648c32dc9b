"""Platform admins register an organization's identity provider here too, through the same
service (and audit event) as the organization's own page."""

from django import forms
from django.contrib import admin, messages

from audit.context import AuditContext
from responseportal.admin import ReadOnlyAdmin
from responseportal.refusals import TransitionRefused

from . import services
from .forms import IdentityProviderForm
from .models import ExternalIdentity, IdentityProvider


class IdentityProviderAdminForm(IdentityProviderForm, forms.ModelForm):
    class Meta:
        model = IdentityProvider
        fields = ["organization"]

    def __init__(self, *args, instance=None, **kwargs):
        if instance is not None and instance.pk:
            kwargs["initial"] = {
                **IdentityProviderForm.initial_for(instance),
                **kwargs.get("initial", {}),
            }
        super().__init__(*args, instance=instance, **kwargs)

    def clean(self):
        data = super().clean()
        if self.instance.pk is None and not data.get("client_secret"):
            self.add_error(
                "client_secret", "Enter the client secret the identity provider gave you."
            )
        if not self.errors:
            # Only for the model's own validation; the service saves (see save_model).
            for name in services.PROVIDER_FIELDS:
                setattr(self.instance, name, data[name])
            self.instance.client_secret_encrypted = self.instance.client_secret_encrypted or "-"
        return data


@admin.register(IdentityProvider)
class IdentityProviderAdmin(admin.ModelAdmin):
    form = IdentityProviderAdminForm
    list_display = [
        "organization",
        "issuer",
        "client_id",
        "password_sign_in_disabled",
        "updated_at",
    ]
    list_select_related = ["organization"]

    def get_readonly_fields(self, request, obj=None):
        return ["organization"] if obj is not None else []

    def get_fields(self, request, obj=None):
        fields = list(IdentityProviderForm.base_fields)
        fields.remove("version")
        return ["organization", *fields]

    def save_model(self, request, obj, form, change):
        organization = obj.organization
        current = IdentityProvider.objects.filter(organization=organization).first()
        try:
            saved = services.save_identity_provider(
                organization,
                actor=request.user,
                values=form.values(),
                client_secret=form.cleaned_data["client_secret"],
                version=current.updated_at.isoformat() if current else "",
                context=AuditContext.from_request(request),
            )
        except TransitionRefused as refusal:
            messages.error(request, refusal.message)
            return
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        services.delete_identity_provider(
            obj.organization, actor=request.user, context=AuditContext.from_request(request)
        )

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(ReadOnlyAdmin):
    list_display = ["user", "issuer", "subject", "email", "last_sign_in_at"]
    list_select_related = ["user"]
    search_fields = ["user__username", "email", "subject"]
