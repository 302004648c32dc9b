from django.core.management.base import BaseCommand

from approvals.reminders import send_due_reminders


class Command(BaseCommand):
    help = (
        "Remind the admins of the requests still waiting for their decision: once after the "
        "organization's remind-after time, once more when a quarter of a request's lifetime is "
        "left. Beat runs this every minute as approvals.tasks.send_reminders."
    )

    def handle(self, *args, **options) -> None:
        count = send_due_reminders()
        self.stdout.write(f"Sent {count} reminder{'s' if count != 1 else ''}.")
