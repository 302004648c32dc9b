"""Whether a user has a second factor: what the policy and step-up ask on each page."""

import pytest
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.factors import has_second_factor
from accounts.models import Passkey

pytestmark = pytest.mark.django_db


def test_nothing_or_only_an_unconfirmed_app_or_recovery_codes_is_no_factor(
    operator, django_assert_num_queries
):
    with django_assert_num_queries(1):
        assert not has_second_factor(operator)
    TOTPDevice.objects.create(user=operator, name="App", confirmed=False)
    StaticDevice.objects.create(user=operator, name="Recovery codes")
    with django_assert_num_queries(1):
        assert not has_second_factor(operator)


def test_a_confirmed_app_is_one(operator, admin, django_assert_num_queries):
    TOTPDevice.objects.create(user=operator, name="App", confirmed=True)
    with django_assert_num_queries(1):
        assert has_second_factor(operator)
    assert not has_second_factor(admin)


def test_a_passkey_alone_is_one_read_in_one_statement(operator, admin, django_assert_num_queries):
    Passkey.objects.create(user=operator, name="Key", credential_id="k1", public_key=b"k")
    with django_assert_num_queries(1):
        assert has_second_factor(operator)
    assert not has_second_factor(admin)
