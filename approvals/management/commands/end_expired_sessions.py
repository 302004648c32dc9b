from django.core.management.base import BaseCommand

from approvals.execution.steps import expire_remote_shells


class Command(BaseCommand):
    help = (
        "End every remote shell session past its validity period. Beat runs this every "
        "minute as approvals.tasks.end_expired_sessions."
    )

    def handle(self, *args, **options) -> None:
        count = expire_remote_shells()
        self.stdout.write(f"Ended {count} remote shell session{'s' if count != 1 else ''}.")
