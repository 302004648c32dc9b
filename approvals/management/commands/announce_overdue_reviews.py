from django.core.management.base import BaseCommand

from approvals.break_glass import REVIEW_DUE_AFTER, announce_overdue_reviews


class Command(BaseCommand):
    help = (
        "Announce again to the admins, once, each break-glass run still unreviewed "
        f"{REVIEW_DUE_AFTER.total_seconds() / 3600:g} hours after it ran. Beat runs this every "
        "minute as approvals.tasks.announce_overdue_reviews."
    )

    def handle(self, *args, **options) -> None:
        count = announce_overdue_reviews()
        self.stdout.write(
            f"Announced {count} unreviewed break-glass run{'s' if count != 1 else ''}."
        )
