import base64

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.factors import TOTP_DEVICE_NAME

# Published in the README: the demo's initech-admin signs in with codes from this secret.
DEMO_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
DEMO_TOTP_USER = "initech-admin"


class Command(BaseCommand):
    help = (
        f"Give the demo user {DEMO_TOTP_USER} an authenticator app with the published secret "
        f"{DEMO_TOTP_SECRET} (run by seed_demo). Idempotent. Refuses to run unless DEBUG is on "
        "or --force is given."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="Run even with DEBUG off (never in production)."
        )

    @transaction.atomic
    def handle(self, *args, force: bool = False, **options) -> None:
        if not (settings.DEBUG or force):
            raise CommandError(
                "seed_demo_two_factor sets a published secret; it runs only with DEBUG=true, "
                "or with --force if you really mean it."
            )
        user = get_user_model().objects.filter(username=DEMO_TOTP_USER).first()
        if user is None:
            raise CommandError(f"There is no user {DEMO_TOTP_USER}: run seed_demo.")
        key = base64.b32decode(DEMO_TOTP_SECRET).hex()
        _, created = TOTPDevice.objects.get_or_create(
            user=user,
            confirmed=True,
            defaults={"name": TOTP_DEVICE_NAME, "key": key},
        )
        if created:
            self.stdout.write(f"Gave {DEMO_TOTP_USER} an authenticator app.")
        self.stdout.write(
            f"{DEMO_TOTP_USER} signs in with codes from the authenticator-app secret "
            f'{DEMO_TOTP_SECRET} (e.g. `python -c "import pyotp; '
            f"print(pyotp.TOTP('{DEMO_TOTP_SECRET}').now())\"`)."
        )
