from django.core.management.base import BaseCommand

from approvals.services import expire_overdue_requests


class Command(BaseCommand):
    help = (
        "Expire every pending request past its lifetime (it will never run) and tell each "
        "requester. Beat runs this every minute as approvals.tasks.expire_requests."
    )

    def handle(self, *args, **options) -> None:
        count = expire_overdue_requests()
        self.stdout.write(f"Expired {count} pending request{'s' if count != 1 else ''}.")
