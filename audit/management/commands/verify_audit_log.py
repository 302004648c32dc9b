"""Check that every audit chain (or one organization's) is intact."""

import time
from argparse import ArgumentTypeError
from contextlib import closing

from django.core.management.base import BaseCommand, CommandError

from audit.chain import chain_of, chains
from audit.verification import MIN_PART_EVENTS, default_jobs, verify_chains
from responseportal.models import Organization

MAX_JOBS = 16


def _jobs(text: str) -> int:
    """`--jobs`: a whole number from 1 to MAX_JOBS (each process holds a database connection)."""
    try:
        jobs = int(text)
    except ValueError:
        raise ArgumentTypeError(f"`{text}` is not a number: expected 1 to {MAX_JOBS}.") from None
    if not 1 <= jobs <= MAX_JOBS:
        raise ArgumentTypeError(
            f"{jobs} is out of range: expected 1 to {MAX_JOBS} processes, each holding a "
            "database connection."
        )
    return jobs


class Command(BaseCommand):
    help = (
        "Walk each audit chain in sequence order, recompute every event's hash and check the "
        "links between them. Exits 0 when intact, 1 naming the first bad event."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", metavar="SLUG", help="check only this organization's chain")
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=5000,
            help="events fetched per round trip to the database (default 5000)",
        )
        parser.add_argument(
            "--jobs",
            type=_jobs,
            default=default_jobs(),
            help="processes checking events at once, on PostgreSQL (default: one per core, "
            "at most 4)",
        )

        parser.add_argument(
            "--part-events",
            type=int,
            default=None,
            help="with several processes, the fewest events handed to one at a time "
            f"(default {MIN_PART_EVENTS:,})",
        )

    def handle(self, *args, org=None, chunk_size=5000, jobs=1, part_events=None, **options):
        if part_events is not None and part_events < 1:
            raise CommandError(f"--part-events {part_events}: expected 1 or more events.")
        if org is not None:
            organization = Organization.objects.filter(slug=org).first()
            if organization is None:
                raise CommandError(f"No organization has the slug `{org}`.")
            to_check = [chain_of(organization)]
        else:
            to_check = chains()
        started = time.monotonic()
        checked = 0
        with closing(
            verify_chains(to_check, chunk_size=chunk_size, jobs=jobs, part_events=part_events)
        ) as reports:
            for report in reports:
                checked += report.checked
                if report.first_break is not None:
                    self.stdout.write(f"Checked {checked:,} events.")
                    raise CommandError(f"Tampering detected. {report.first_break}", returncode=1)
        elapsed = time.monotonic() - started
        rate = f" ({checked / elapsed:,.0f} events/s)" if elapsed > 0 and checked else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Checked {checked:,} events in {len(to_check)} "
                f"chain{'s' if len(to_check) != 1 else ''} in {elapsed:.1f} s{rate}: intact."
            )
        )
