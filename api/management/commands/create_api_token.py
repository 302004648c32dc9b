"""Make an API token from the command line; the secret alone is the last line printed."""

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from api.forms import MAX_NAME_LENGTH
from api.tokens import DEFAULT_DAYS, MAX_DAYS, create_token
from responseportal.models import Organization


class Command(BaseCommand):
    help = "Create an API token for USERNAME in organization SLUG; prints its secret last."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--org", required=True, metavar="SLUG")
        parser.add_argument("--name", required=True)
        parser.add_argument("--days", type=int, default=DEFAULT_DAYS)

    def handle(self, *args, username, org, name, days, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user is named `{username}`: expected an existing username.")
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization has the slug `{org}`.")
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
            raise CommandError(
                f"`{name}` is not a token name: expected 1 to {MAX_NAME_LENGTH} printable "
                "characters on one line."
            )
        if not 1 <= days <= MAX_DAYS:
            raise CommandError(f"--days {days}: expected 1 to {MAX_DAYS} days.")
        try:
            token, secret = create_token(user, organization, name=name, days=days)
        except PermissionDenied as refusal:
            raise CommandError(str(refusal)) from None
        self.stdout.write(
            f"Created the token {token.name} of {username} in {organization.slug}, "
            f"expiring {token.expires_at:%Y-%m-%d %H:%M} UTC. Its secret, shown only now:"
        )
        self.stdout.write(secret)
