"""Bulk-create valid audit events, with correct chains, for benchmarks and manual checks."""

import random
import time
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from actions.models import ResponseAction
from audit.chain import VERBS, append, chain_of
from audit.models import AuditEvent, Source
from responseportal.models import Membership, Organization

SPAN = timedelta(days=90)
ADDRESSES = ["192.0.2.10", "198.51.100.7", "203.0.113.250", "2001:db8::1", "2001:db8:0:1::2a"]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
    "python-requests/2.32",
]


class Command(BaseCommand):
    help = (
        "Append N valid audit events (hashes computed here, inserted in batches) to one or "
        "more organizations' chains, spread over the last 90 days."
    )

    def add_arguments(self, parser):
        parser.add_argument("count", type=int, help="how many events to create")
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--org", metavar="SLUG", help="the organization (created if new)")
        target.add_argument(
            "--orgs",
            type=int,
            default=1,
            metavar="K",
            help="spread the events over K organizations: the first K by slug, "
            "with seed-1, seed-2… created if there are fewer (default 1)",
        )
        parser.add_argument("--batch-size", type=int, default=5000)
        parser.add_argument("--seed", type=int, default=0, help="seed of the random choices")

    def handle(self, *args, count, org=None, orgs=1, batch_size=5000, seed=0, **options):
        if count < 1 or orgs < 1 or batch_size < 1:
            raise CommandError("N, --orgs and --batch-size must be at least 1.")
        organizations = [self._organization(org)] if org else self._organizations(orgs)
        chooser = random.Random(seed)  # noqa: S311 - test data, not security
        started = time.monotonic()
        for position, organization in enumerate(organizations):
            share = count // len(organizations) + (position < count % len(organizations))
            if share:
                self._seed(organization, share, batch_size, chooser)
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Created {count:,} audit events in {len(organizations)} chain(s) "
                f"in {elapsed:.1f} s ({count / max(elapsed, 1e-9):,.0f} events/s)."
            )
        )

    def _organization(self, slug: str) -> Organization:
        organization, _ = Organization.objects.get_or_create(
            slug=slug, defaults={"name": slug.replace("-", " ").title()}
        )
        return organization

    def _organizations(self, wanted: int) -> list[Organization]:
        found = list(Organization.objects.order_by("slug")[:wanted])
        number = 1
        while len(found) < wanted:
            organization, created = Organization.objects.get_or_create(
                slug=f"seed-{number}", defaults={"name": f"Seed {number}"}
            )
            if created or organization not in found:
                found.append(organization)
            number += 1
        return found

    def _seed(self, organization: Organization, count: int, batch_size: int, chooser) -> None:
        chain = chain_of(organization)
        members = list(
            Membership.objects.filter(organization=organization).values_list(
                "user_id", "user__username", "role"
            )
        ) or [(None, "", "")]
        action_keys = list(ResponseAction.objects.values_list("key", flat=True)) or [""]
        # Requests are the approvals app's: reached through the events' link to them.
        requests = list(
            AuditEvent.request.field.related_model.objects.filter(
                organization=organization
            ).values_list("id", "action__key")[:50]
        )
        verbs = list(VERBS)
        now = timezone.now()
        last = (
            AuditEvent.objects.filter(chain=chain)
            .order_by("-sequence")
            .values_list("timestamp", flat=True)
            .first()
        )
        start = max(now - SPAN, last + timedelta(microseconds=1)) if last else now - SPAN
        step = (now - start) / count
        made = 0
        while made < count:
            size = min(batch_size, count - made)
            batch = []
            for n in range(size):
                actor_id, username, role = chooser.choice(members)
                request_id, action_key = (
                    chooser.choice(requests)
                    if requests and chooser.random() < 0.1
                    else (None, chooser.choice(action_keys))
                )
                verb = chooser.choice(verbs)
                batch.append(
                    AuditEvent(
                        organization=organization,
                        # `append` keeps it from going before the chain's last event.
                        timestamp=start + step * (made + n),
                        actor_id=actor_id,
                        actor_username=username,
                        role=role,
                        verb=verb,
                        request_id=request_id,
                        action_key=action_key,
                        data=self._data(verb, made + n, chooser),
                        source=chooser.choice(Source.values),
                        ip_address=chooser.choice(ADDRESSES),
                        user_agent=chooser.choice(AGENTS),
                    )
                )
            append(organization, batch)
            made += size

    @staticmethod
    def _data(verb: str, number: int, chooser) -> dict:
        if verb == "settings.changed":
            before = chooser.choice([24, 48, 72])
            return {"pending_lifetime_hours": {"before": before, "after": before + 24}}
        if verb.startswith("request."):
            return {"reason": f"Seeded event {number}", "status": {"before": "pending"}}
        return {"seeded": True, "number": number}
