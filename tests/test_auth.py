import pytest
from django.urls import reverse

from responseportal.models import Role

from .conftest import client_for
from .factories import PASSWORD, MembershipFactory

pytestmark = pytest.mark.django_db


def sign_in(client, username, password=PASSWORD, *, follow=False, **extra):
    data = {"username": username, "password": password, **extra}
    return client.post(reverse("login"), data, follow=follow)


def test_sign_in_page_uses_the_portal_layout(client):
    response = client.get(reverse("login"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Response Portal" in html
    assert 'name="username"' in html and 'name="password"' in html
    assert "bootstrap/css/bootstrap.min.css" in html


def test_member_of_one_organization_lands_on_it(client, admin):
    response = sign_in(client, "acme-admin", follow=True)
    assert response.redirect_chain[-1][0] == reverse("org_dashboard", args=["acme"])
    assert "Acme Corporation" in response.content.decode()


def test_member_of_several_organizations_chooses(client, operator, globex):
    MembershipFactory(user=operator, organization=globex, role=Role.OPERATOR)
    response = sign_in(client, "operator", follow=True)
    assert response.redirect_chain[-1][0] == reverse("org_list")
    html = response.content.decode()
    assert "Acme Corporation" in html and "Globex Corporation" in html


def test_user_without_organization_is_told_so(client):
    from .factories import UserFactory

    UserFactory(username="newcomer")
    response = sign_in(client, "newcomer", follow=True)
    assert "not a member of any organization" in response.content.decode()


def test_wrong_password_says_so_and_signs_nobody_in(client, operator):
    response = sign_in(client, "operator", password="wrong-password")
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_sign_in_goes_back_to_the_page_asked_for(client, operator):
    response = sign_in(client, "operator", next="/actions/isolate_endpoint/")
    assert response["Location"] == "/actions/isolate_endpoint/"


def test_sign_in_never_redirects_off_site(client, operator):
    response = sign_in(client, "operator", next="https://evil.example.com/")
    assert response["Location"] == reverse("home")


def test_sign_out_is_a_post_and_ends_the_session(operator):
    client = client_for(operator)
    assert client.get(reverse("logout")).status_code == 405
    assert "_auth_user_id" in client.session
    response = client.post(reverse("logout"))
    assert response["Location"] == reverse("login")
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("catalog")).status_code == 302


def test_sign_in_without_csrf_token_is_refused(csrf_client, operator):
    response = sign_in(csrf_client, "operator")
    assert response.status_code == 403


@pytest.mark.parametrize(
    "who,labels",
    [
        (
            "operator",
            ["Dashboard", "New request", "Requests", "Approval settings", "Scripts"],
        ),
        (
            "admin",
            [
                "Dashboard",
                "Requests",
                "Pending queue",
                "Needs review",
                "Approval settings",
                "Scripts",
                "Audit log",
            ],
        ),
        ("auditor", ["Dashboard", "Requests", "Approval settings", "Scripts", "Audit log"]),
    ],
)
def test_navigation_shows_only_what_the_role_may_use(cast, who, labels):
    response = client_for(cast[who]).get(reverse("org_dashboard", args=["acme"]))
    assert [item["label"] for item in response.context["nav_items"]] == [
        *labels,
        "Actions catalog",
    ]
    for item in response.context["nav_items"]:
        assert client_for(cast[who]).get(item["url"]).status_code == 200, item
    assert "Administration" not in response.content.decode()


def test_navigation_offers_administration_to_staff_only(operator):
    operator.is_staff = True
    operator.save()
    response = client_for(operator).get(reverse("catalog"))
    assert "Administration" in response.content.decode()


def test_navigation_switches_between_organizations(operator, globex):
    MembershipFactory(user=operator, organization=globex, role=Role.ADMIN)
    response = client_for(operator).get(reverse("org_dashboard", args=["globex"]))
    assert response.context["nav_current"].organization == globex
    html = response.content.decode()
    assert reverse("org_dashboard", args=["acme"]) in html
