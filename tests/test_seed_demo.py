import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from responseportal.models import Membership

pytestmark = pytest.mark.django_db

EXPECTED = {
    ("operator", "acme", "operator"),
    ("operator", "globex", "operator"),
    ("acme-admin", "acme", "admin"),
    ("acme-auditor", "acme", "auditor"),
    ("globex-admin", "globex", "admin"),
}


def memberships():
    return set(Membership.objects.values_list("user__username", "organization__slug", "role"))


def test_it_refuses_without_debug_or_force(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=true"):
        call_command("seed_demo")
    assert not Membership.objects.exists()


def test_it_creates_the_demo_cast(settings):
    settings.DEBUG = True
    call_command("seed_demo")
    assert memberships() == EXPECTED
    assert get_user_model().objects.get(username="acme-admin").check_password("demo-password")


def test_running_it_twice_changes_nothing_and_loses_nothing():
    call_command("seed_demo", force=True)
    admin = get_user_model().objects.get(username="acme-admin")
    admin.set_password("a-password-the-admin-chose")
    admin.save()
    call_command("seed_demo", force=True)
    assert memberships() == EXPECTED
    admin.refresh_from_db()
    assert admin.check_password("a-password-the-admin-chose")


def test_demo_operator_can_sign_in(client):
    call_command("seed_demo", force=True)
    response = client.post(
        "/accounts/login/", {"username": "operator", "password": "demo-password"}
    )
    assert response.status_code == 302
