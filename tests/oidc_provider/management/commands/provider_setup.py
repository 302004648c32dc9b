"""Create the provider's users and clients from a JSON document on standard input:
{"users": [{"username", "password", "email", "groups", "claims"}],
 "clients": [{"client_id", "client_secret", "redirect_uris", "issuer", "audience",
              "clock_offset_seconds"}]}"""

import json
import sys

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from oauth2_provider.models import Application

from tests.oidc_provider.models import ClientSetup, UserClaims


class Command(BaseCommand):
    def handle(self, *args, **options):
        document = json.load(sys.stdin)
        for entry in document.get("users", []):
            user, _ = User.objects.get_or_create(username=entry["username"])
            user.email = entry.get("email", "")
            user.first_name = entry.get("first_name", "")
            user.set_password(entry["password"])
            user.save()
            user.groups.set(Group.objects.get_or_create(name=name)[0] for name in entry["groups"])
            UserClaims.objects.update_or_create(
                user=user, defaults={"claims": entry.get("claims", {})}
            )
        for entry in document.get("clients", []):
            application = Application.objects.filter(client_id=entry["client_id"]).first()
            if application is None:
                application = Application(client_id=entry["client_id"])
            application.name = entry["client_id"]
            application.client_secret = entry["client_secret"]
            application.client_type = Application.CLIENT_CONFIDENTIAL
            application.authorization_grant_type = Application.GRANT_AUTHORIZATION_CODE
            application.algorithm = Application.RS256_ALGORITHM
            application.redirect_uris = " ".join(entry["redirect_uris"])
            application.skip_authorization = True
            application.save()
            ClientSetup.objects.update_or_create(
                client_id=entry["client_id"],
                defaults={
                    "issuer": entry.get("issuer", ""),
                    "audience": entry.get("audience", ""),
                    "clock_offset_seconds": entry.get("clock_offset_seconds", 0),
                },
            )
