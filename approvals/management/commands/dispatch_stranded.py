from datetime import timedelta

from django.core.management.base import BaseCommand

from approvals.execution.steps import redispatch_stranded


class Command(BaseCommand):
    help = (
        "Send again to the workers every request whose message was lost: approved or queued "
        "for longer than EXECUTION_REDISPATCH_AFTER seconds, or in progress with no heartbeat "
        "for longer than EXECUTION_HEARTBEAT_TIMEOUT (or, started without heartbeats, no "
        "activity for longer than EXECUTION_STALLED_AFTER). Beat runs this every minute as "
        "approvals.tasks.dispatch_stranded."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--waited",
            type=int,
            metavar="SECONDS",
            help="Send requests approved or queued for this long (default: the setting).",
        )
        parser.add_argument(
            "--idle",
            type=int,
            metavar="SECONDS",
            help="Send requests in progress with no activity for this long (default: the setting).",
        )
        parser.add_argument(
            "--silent",
            type=int,
            metavar="SECONDS",
            help="Send requests in progress silent for this long (default: the setting).",
        )

    def handle(self, *args, waited=None, idle=None, silent=None, **options) -> None:
        count = redispatch_stranded(
            waited=None if waited is None else timedelta(seconds=waited),
            idle=None if idle is None else timedelta(seconds=idle),
            silent=None if silent is None else timedelta(seconds=silent),
        )
        self.stdout.write(f"Sent {count} stranded request{'s' if count != 1 else ''} again.")
