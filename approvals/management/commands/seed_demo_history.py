import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from approvals.demo_history import DAYS, HistoryNotWritten, write_history


class Command(BaseCommand):
    help = (
        f"Write {DAYS} days of history for the demo organizations (acme, globex) through the "
        "portal's own services: requests, decisions, runs, settings changes and sign-ins. "
        "Once: an organization whose audit log already holds an event is left alone. "
        "Refuses to run unless DEBUG is on or --force is given. seed_demo runs it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="Run even with DEBUG off (never in production)."
        )

    def handle(self, *args, force: bool = False, **options) -> None:
        if not (settings.DEBUG or force):
            raise CommandError(
                "seed_demo_history writes made-up requests and decisions; it runs only with "
                "DEBUG=true, or with --force if you really mean it."
            )
        started = time.monotonic()
        try:
            written = write_history()
        except HistoryNotWritten as error:
            raise CommandError(str(error)) from None
        seconds = time.monotonic() - started
        for slug, events in written.items():
            if events:
                self.stdout.write(f"Wrote {DAYS} days of history at {slug}: {events} audit events.")
            else:
                self.stdout.write(
                    f"{slug}: already has a history, or does not exist; nothing added."
                )
        if any(written.values()):
            self.stdout.write(self.style.SUCCESS(f"Demo history written in {seconds:.1f} s."))
