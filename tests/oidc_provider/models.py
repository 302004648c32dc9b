"""What the test provider says beyond Django's users: extra claims per user, and how it is
(mis)configured per client: another issuer or audience in its ID tokens, or a clock that is off."""

from django.conf import settings
from django.db import models


class UserClaims(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    claims = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"claims of {self.user}"


class ClientSetup(models.Model):
    client_id = models.CharField(max_length=100, unique=True)
    issuer = models.CharField(max_length=200, blank=True)
    audience = models.CharField(max_length=200, blank=True)
    clock_offset_seconds = models.IntegerField(default=0)

    def __str__(self) -> str:
        return self.client_id
