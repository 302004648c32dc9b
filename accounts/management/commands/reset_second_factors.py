from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.services import reset_second_factors


class Command(BaseCommand):
    help = (
        "Remove every second factor of USERNAME (authenticator app, passkeys, recovery codes), "
        "for a user who lost them all, e.g. an organization's last admin. Recorded in the audit "
        "log of each of the user's organizations with the reason and --by; the user is told "
        "by e-mail and sets up a new factor after signing in."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--reason",
            required=True,
            help="Why, e.g. the ticket number and how the user's identity was checked.",
        )
        parser.add_argument(
            "--by",
            required=True,
            help="Who runs this (the platform admin's name), recorded with the reason.",
        )

    def handle(self, *args, username: str, reason: str, by: str, **options) -> None:
        reason, by = " ".join(reason.split()), " ".join(by.split())
        if not reason or not reason.isprintable():
            raise CommandError("Give a --reason in words (ticket, identity check).")
        if not by or not by.isprintable():
            raise CommandError("Give --by: the name of the platform admin running this.")
        if len(reason) > 500 or len(by) > 150:
            raise CommandError("Keep --reason under 500 characters and --by under 150.")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user {username!r}.")
        removed = reset_second_factors(user, reason=reason, by=by)
        if removed:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Removed the second factors of {username}: {', '.join(removed)}."
                )
            )
        else:
            self.stdout.write(f"{username} had no second factor; the reset is recorded anyway.")
