from functools import partial

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from responseportal.models import Membership, Organization, Role, SecondFactorPolicy

DEMO_PASSWORD = "demo-password"
ORGANIZATIONS = {"acme": "Acme Corporation", "globex": "Globex Corporation", "initech": "Initech"}
# acme and globex keep the tour as it was; initech shows two-factor sign-in and step-up.
SECOND_FACTOR_POLICIES = {"initech": SecondFactorPolicy.EVERYONE}
MEMBERSHIPS = [
    ("operator", "acme", Role.OPERATOR),
    ("operator", "globex", Role.OPERATOR),
    ("acme-admin", "acme", Role.ADMIN),
    ("acme-auditor", "acme", Role.AUDITOR),
    ("globex-admin", "globex", Role.ADMIN),
    ("operator", "initech", Role.OPERATOR),
    ("initech-admin", "initech", Role.ADMIN),
]


class Command(BaseCommand):
    help = (
        "Create the demo organizations (acme, globex, initech) and users (operator, "
        f"acme-admin, acme-auditor, globex-admin, initech-admin; password {DEMO_PASSWORD!r}). "
        "Idempotent: what exists is kept as it is. Refuses to run unless DEBUG is on or "
        "--force is given."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="Run even with DEBUG off (never in production)."
        )
        parser.add_argument(
            "--no-history",
            action="store_false",
            dest="history",
            help="Only the organizations and users, without the month of demo history.",
        )

    @transaction.atomic
    def handle(self, *args, force: bool = False, history: bool = True, **options) -> None:
        if not (settings.DEBUG or force):
            raise CommandError(
                "seed_demo creates users with a well-known password; it runs only with "
                "DEBUG=true, or with --force if you really mean it."
            )
        User = get_user_model()
        organizations = {}
        for slug, name in ORGANIZATIONS.items():
            organizations[slug], created = Organization.objects.get_or_create(
                slug=slug,
                defaults={
                    "name": name,
                    "second_factor_policy": SECOND_FACTOR_POLICIES.get(
                        slug, SecondFactorPolicy.NONE
                    ),
                },
            )
            if created:
                self.stdout.write(f"Created organization {slug}.")
        for username, slug, role in MEMBERSHIPS:
            user, created = User.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.com"}
            )
            if created:
                # set_password skips the validators on purpose: the demo password is only
                # ever set here, behind the DEBUG guard above.
                user.set_password(DEMO_PASSWORD)
                user.save(update_fields=["password"])
                self.stdout.write(f"Created user {username}.")
            _, created = Membership.objects.get_or_create(
                user=user, organization=organizations[slug], defaults={"role": role}
            )
            if created:
                self.stdout.write(f"Made {username} {role.label.lower()} of {slug}.")
        # initech-admin's authenticator app, with the demo secret (accounts' command).
        call_command("seed_demo_two_factor", force=True, stdout=self.stdout)
        if history:
            # After this command's own commit: the history commits step by step, in the past.
            transaction.on_commit(
                partial(call_command, "seed_demo_history", force=True, stdout=self.stdout)
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: sign in as operator, acme-admin, acme-auditor, "
                f"globex-admin or initech-admin with the password {DEMO_PASSWORD!r}."
            )
        )
