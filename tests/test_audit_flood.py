"""Sign-in traffic cannot flood the audit log: a lockout is recorded once per window and the
attempts it refuses are counted; failed sign-ins are limited per address and overall, per
chain; each count is written once, as one `auth.attempts_counted` event."""

import threading
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db import connections
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from actions.sync import sync_catalog
from audit import flood
from audit.chain import PLATFORM_CHAIN, chain_of, verify_chain
from audit.models import AuditEvent, AuditTally
from audit.signals import sign_in_failed

from .factories import PASSWORD

pytestmark = pytest.mark.django_db

LIMIT = 5  # AXES_FAILURE_LIMIT
WRONG = "wrong-password"


def attempt(client, username, password=WRONG, address="198.51.100.7"):
    return client.post(
        reverse("login"),
        {"username": username, "password": password},
        REMOTE_ADDR=address,
        HTTP_USER_AGENT="flood/1.0",
    )


def verbs(chain=None) -> list[str]:
    events = AuditEvent.objects.order_by("chain", "sequence")
    if chain is not None:
        events = events.filter(chain=chain)
    return list(events.values_list("verb", flat=True))


def end_every_window() -> None:
    """As if every window had run out: the next sign-in event writes their counts."""
    AuditTally.objects.update(window_end=timezone.now() - timedelta(seconds=1))


def counts(chain) -> list[dict]:
    return [
        event.data
        for event in AuditEvent.objects.filter(chain=chain, verb="auth.attempts_counted").order_by(
            "sequence"
        )
    ]


class TestLockout:
    def lock(self, client, username="acme-admin", address="198.51.100.7"):
        for _ in range(LIMIT):
            attempt(client, username, address=address)

    def test_it_is_recorded_once_and_the_refused_attempts_are_counted(self, client, acme, admin):
        self.lock(client)
        assert verbs() == ["auth.sign_in_failed"] * 4 + ["auth.locked_out", "auth.sign_in_failed"]
        for n in range(60):
            # The right password too: refused unchecked while the lockout lasts.
            response = attempt(client, "acme-admin", PASSWORD if n % 2 else WRONG)
            assert response.status_code == 429
        assert len(verbs()) == LIMIT + 1
        assert AccessAttempt.objects.get().failures_since_start == LIMIT  # axes' row is still

        end_every_window()
        flood.write_ended_counts()
        flood.write_ended_counts()  # once only
        [count] = counts(chain_of(acme))
        assert (count["attempts"], count["reason"], count["username"], count["address"]) == (
            60,
            "locked out",
            "acme-admin",
            "198.51.100.7",
        )
        assert not AuditTally.objects.exists()
        assert verify_chain(chain_of(acme)).first_break is None

    def test_the_count_is_written_at_the_next_sign_in_of_anyone(self, client, acme, admin, auditor):
        self.lock(client)
        for _ in range(7):
            attempt(client, "acme-admin")
        end_every_window()
        assert attempt(Client(), "acme-auditor", PASSWORD, "192.0.2.99").status_code == 302
        assert [c["attempts"] for c in counts(chain_of(acme))] == [7]
        assert verbs(chain_of(acme))[-2:] == ["auth.attempts_counted", "auth.signed_in"]

    def test_a_lockout_from_another_address_is_its_own(self, client, acme, admin):
        self.lock(client, address="198.51.100.7")
        self.lock(client, address="203.0.113.8")
        assert verbs().count("auth.locked_out") == 2

    def test_an_unknown_username_is_locked_out_on_the_platform_chain_once(self, client, acme):
        for _ in range(LIMIT + 40):
            attempt(client, "ghost")
        assert verbs(PLATFORM_CHAIN).count("auth.locked_out") == 1
        assert len(verbs(PLATFORM_CHAIN)) == LIMIT + 1
        end_every_window()
        flood.write_ended_counts()
        assert [c["attempts"] for c in counts(PLATFORM_CHAIN)] == [40]

    def test_its_window_is_the_lockouts(self, client, acme, admin, settings):
        settings.AXES_COOLOFF_TIME = timedelta(minutes=7)
        self.lock(client)
        tally = AuditTally.objects.get(kind=flood.LOCKED_OUT)
        assert tally.window_end - tally.window_start == timedelta(minutes=7)
        settings.AXES_COOLOFF_TIME = None  # axes: locked until an admin resets it
        assert flood.lockout_window() == timedelta(minutes=15)

    def test_without_a_count_nothing_is_written(self, client, acme, admin):
        self.lock(client)
        end_every_window()
        assert flood.write_ended_counts() == 0
        assert counts(chain_of(acme)) == []
        assert not AuditTally.objects.exists()


class TestUnknownUsernames:
    def test_one_address_appends_ten_a_minute_and_the_rest_is_counted(self, client, db):
        for n in range(25):
            attempt(client, f"nobody-{n}", address="198.51.100.20")
        assert verbs(PLATFORM_CHAIN) == ["auth.sign_in_failed"] * flood.PER_ADDRESS_PER_MINUTE
        end_every_window()
        flood.write_ended_counts()
        [count] = counts(PLATFORM_CHAIN)
        assert (count["attempts"], count["reason"], count["address"], count["limit"]) == (
            15,
            "per address",
            "198.51.100.20",
            10,
        )

    @pytest.mark.parametrize(
        "spellings",
        [
            ["2001:db8:1:2::1", "2001:db8:1:2::ffff", "2001:DB8:1:2:abcd::7"],
            ["192.0.2.7", "::ffff:192.0.2.7", "::ffff:c000:207"],
        ],
        ids=["one-ipv6-64", "ipv4-and-mapped"],
    )
    def test_spellings_and_neighbours_of_one_address_count_together(self, client, db, spellings):
        for n in range(30):
            attempt(client, f"nobody-{n}", address=spellings[n % len(spellings)])
        assert len(verbs(PLATFORM_CHAIN)) == flood.PER_ADDRESS_PER_MINUTE

    def test_all_addresses_together_append_sixty_a_minute(self, db):
        for n in range(75):
            attempt(Client(), f"nobody-{n}", address=f"198.51.{n // 250}.{n % 250 + 1}")
        assert len(verbs(PLATFORM_CHAIN)) == flood.OVERALL_PER_MINUTE
        end_every_window()
        flood.write_ended_counts()
        assert [(c["attempts"], c["reason"]) for c in counts(PLATFORM_CHAIN)] == [(15, "overall")]

    def test_a_new_window_admits_again(self, client, db):
        for n in range(12):
            attempt(client, f"nobody-{n}")
        end_every_window()
        for n in range(3):
            attempt(client, f"again-{n}")
        assert verbs(PLATFORM_CHAIN) == ["auth.sign_in_failed"] * 10 + [
            "auth.attempts_counted",
            *["auth.sign_in_failed"] * 3,
        ]

    def test_an_organizations_chain_is_limited_too(self, client, acme, admin):
        """A known username from many addresses: five each before axes locks that pair."""
        for n in range(25):
            for _ in range(3):
                attempt(Client(), "acme-admin", address=f"203.0.113.{n + 1}")
        assert verbs(chain_of(acme)).count("auth.sign_in_failed") == flood.OVERALL_PER_MINUTE
        end_every_window()
        flood.write_ended_counts()
        assert [(c["attempts"], c["reason"]) for c in counts(chain_of(acme))] == [(15, "overall")]

    @pytest.mark.parametrize(
        "username",
        ["a\x00b", "\x00" * 10, "x" * 10_000, "é" * 151, "\u202eadmin", ""],
        ids=["nul", "only-nul", "huge", "long-accented", "bidi", "empty"],
    )
    def test_hostile_usernames_are_recorded_bounded_and_never_fail(self, db, username):
        """What the receiver does with any username (the sign-in form lets fewer through)."""
        request = RequestFactory().post("/accounts/login/", REMOTE_ADDR="198.51.100.9")
        sign_in_failed(sender=None, credentials={"username": username}, request=request)
        [event] = AuditEvent.objects.filter(verb="auth.sign_in_failed")
        expected = username.replace("\x00", "")[:150]
        assert event.actor_username == event.data["username"] == expected
        assert event.chain == PLATFORM_CHAIN


@pytest.fixture(scope="module")
def catalog_restored_afterwards(django_db_blocker):
    yield
    with django_db_blocker.unblock():
        sync_catalog()


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_four_clients_hammering_a_locked_username_append_nothing_and_every_attempt_is_counted(
    catalog_restored_afterwards, requires_postgresql, acme, admin
):
    client = Client()
    for _ in range(LIMIT):
        attempt(client, "acme-admin")
    before = AuditEvent.objects.count()
    failures: list[BaseException] = []
    start = threading.Barrier(4)

    def hammer() -> None:
        try:
            mine = Client()
            start.wait()
            for _ in range(50):
                assert attempt(mine, "acme-admin").status_code == 429
        except BaseException as error:
            failures.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert AuditEvent.objects.count() == before
    end_every_window()
    flood.write_ended_counts()
    assert [c["attempts"] for c in counts(chain_of(acme))] == [200]
    assert verify_chain(chain_of(acme)).first_break is None
