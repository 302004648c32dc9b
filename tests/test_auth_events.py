"""Signing in and out, and failing to, leave an event in each of the user's organizations."""

import pytest
from django.test import RequestFactory
from django.urls import reverse

from audit.chain import PLATFORM_CHAIN, chain_of
from audit.context import AuditContext
from audit.models import AuditEvent, Source
from responseportal.http import client_ip
from responseportal.models import Role

from .factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

BROWSER = {"HTTP_USER_AGENT": "Mozilla/5.0 (pytest)", "REMOTE_ADDR": "198.51.100.23"}


def sign_in(client, username, password=PASSWORD):
    return client.post(reverse("login"), {"username": username, "password": password}, **BROWSER)


def events(verb):
    return list(AuditEvent.objects.filter(verb=verb).order_by("chain", "sequence"))


class TestSignIn:
    def test_it_is_recorded_in_the_users_organization(self, client, admin, acme):
        assert sign_in(client, "acme-admin").status_code == 302
        [event] = events("auth.signed_in")
        assert (event.chain, event.actor, event.actor_username, event.role) == (
            chain_of(acme),
            admin,
            "acme-admin",
            Role.ADMIN,
        )
        assert (event.source, event.ip_address, event.user_agent) == (
            Source.WEB,
            "198.51.100.23",
            "Mozilla/5.0 (pytest)",
        )

    def test_it_is_recorded_once_per_organization(self, client, operator, acme, globex):
        MembershipFactory(user=operator, organization=globex, role=Role.AUDITOR)
        sign_in(client, "operator")
        recorded = {(e.organization, e.role) for e in events("auth.signed_in")}
        assert recorded == {(acme, Role.OPERATOR), (globex, Role.AUDITOR)}

    def test_a_user_of_no_organization_is_recorded_on_the_platform_chain(self, client):
        UserFactory(username="staff-only")
        sign_in(client, "staff-only")
        [event] = events("auth.signed_in")
        assert (event.chain, event.organization, event.actor_username) == (
            PLATFORM_CHAIN,
            None,
            "staff-only",
        )


class TestSignOut:
    def test_it_is_recorded(self, client, auditor, acme):
        sign_in(client, "acme-auditor")
        client.post(reverse("logout"), **BROWSER)
        [event] = events("auth.signed_out")
        assert (event.organization, event.actor, event.role) == (acme, auditor, Role.AUDITOR)

    def test_signing_out_when_not_signed_in_records_nothing(self, client, db):
        client.post(reverse("logout"))
        assert not AuditEvent.objects.exists()


class TestFailedSignIn:
    def test_a_wrong_password_is_recorded_with_the_username_tried(self, client, admin, acme):
        response = sign_in(client, "acme-admin", "not-the-password")
        assert response.status_code == 200
        [event] = events("auth.sign_in_failed")
        assert (event.organization, event.actor, event.actor_username, event.role) == (
            acme,
            None,
            "acme-admin",
            "",
        )
        assert event.data == {"username": "acme-admin"}
        assert event.ip_address == "198.51.100.23"
        assert "not-the-password" not in str(event.data)

    def test_an_unknown_username_is_recorded_once_on_the_platform_chain(self, client, cast):
        sign_in(client, '=HYPERLINK("evil")')
        [event] = events("auth.sign_in_failed")
        assert (event.chain, event.organization, event.actor) == (PLATFORM_CHAIN, None, None)
        assert event.actor_username == '=HYPERLINK("evil")'
        assert not AuditEvent.objects.exclude(chain=PLATFORM_CHAIN).exists()


class TestClientAddress:
    def request(self, remote="203.0.113.5", forwarded=None):
        extra = {"REMOTE_ADDR": remote}
        if forwarded is not None:
            extra["HTTP_X_FORWARDED_FOR"] = forwarded
        return RequestFactory().get("/", **extra)

    def test_without_trusted_proxies_forwarded_for_is_ignored(self, settings):
        settings.TRUSTED_PROXY_COUNT = 0
        assert client_ip(self.request(forwarded="192.0.2.1")) == "203.0.113.5"

    def test_one_proxy_gives_the_rightmost_address(self, settings):
        settings.TRUSTED_PROXY_COUNT = 1
        request = self.request(remote="10.0.0.2", forwarded="6.6.6.6, 192.0.2.1")
        assert client_ip(request) == "192.0.2.1"

    def test_two_proxies_give_the_second_address_from_the_right(self, settings):
        settings.TRUSTED_PROXY_COUNT = 2
        request = self.request(remote="10.0.0.3", forwarded="6.6.6.6,192.0.2.1, 10.0.0.2")
        assert client_ip(request) == "192.0.2.1"

    @pytest.mark.parametrize("forwarded", ["192.0.2.1", "", "not-an-address, 10.0.0.2", "1.2.3"])
    def test_a_short_or_malformed_header_falls_back_to_remote_addr(self, settings, forwarded):
        settings.TRUSTED_PROXY_COUNT = 2
        assert client_ip(self.request(remote="10.0.0.3", forwarded=forwarded)) == "10.0.0.3"

    def test_no_header_falls_back_to_remote_addr(self, settings):
        settings.TRUSTED_PROXY_COUNT = 1
        assert client_ip(self.request(remote="10.0.0.3")) == "10.0.0.3"

    def test_ipv6_addresses_are_written_in_their_short_form(self, settings):
        settings.TRUSTED_PROXY_COUNT = 1
        request = self.request(remote="::1", forwarded="2001:DB8:0:0:0:0:0:7")
        assert client_ip(request) == "2001:db8::7"

    def test_a_missing_remote_addr_is_no_address(self, settings):
        settings.TRUSTED_PROXY_COUNT = 0
        assert client_ip(self.request(remote="")) is None

    def test_every_caller_of_from_request_gets_it(self, settings):
        settings.TRUSTED_PROXY_COUNT = 1
        request = self.request(remote="10.0.0.2", forwarded="192.0.2.44")
        assert AuditContext.from_request(request).ip_address == "192.0.2.44"
