from django.core.management.base import BaseCommand

from approvals.models import Notification
from approvals.notifications import deliver_due


class Command(BaseCommand):
    help = (
        "Deliver the e-mails and webhook calls still waiting in the outbox (a broker, worker, "
        "mail server or webhook was down), each at least once. Beat runs this every minute as "
        "approvals.tasks.deliver_notifications."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--all",
            action="store_true",
            dest="everything",
            help="Try every unsent notification now, even those waiting before their next "
            "attempt and those given up after too many attempts.",
        )

    def handle(self, *args, everything=False, **options) -> None:
        count = deliver_due(everything=everything)
        left = Notification.objects.filter(sent_at__isnull=True).count()
        self.stdout.write(
            f"Delivered {count} notification{'s' if count != 1 else ''}; {left} still unsent."
        )
