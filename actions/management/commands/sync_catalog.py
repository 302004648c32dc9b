from django.core.management.base import BaseCommand

from actions.sync import sync_catalog


class Command(BaseCommand):
    help = "Make the response-action catalog in the database match the code (idempotent)."

    def handle(self, *args, **options) -> None:
        result = sync_catalog()
        if not result.changed:
            self.stdout.write("Catalog up to date: nothing changed.")
            return
        for label, keys in (
            ("created", result.created),
            ("updated", result.updated),
            ("deactivated", result.deactivated),
        ):
            if keys:
                self.stdout.write(f"{label.capitalize()} {len(keys)}: {', '.join(keys)}")
        self.stdout.write(self.style.SUCCESS("Catalog synced."))
