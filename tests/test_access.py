import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import reverse

from responseportal.access import get_membership
from responseportal.models import Role

from .conftest import client_for

pytestmark = pytest.mark.django_db

# Every page that exists, and what each member of the cast gets there.
PAGES = [
    ("org_dashboard", ["acme"], {"operator": 200, "admin": 200, "auditor": 200, "outsider": 404}),
    ("org_list", [], {"operator": 200, "admin": 200, "auditor": 200, "outsider": 200}),
    ("catalog", [], {"operator": 200, "admin": 200, "auditor": 200, "outsider": 200}),
    (
        "action_detail",
        ["isolate_endpoint"],
        {"operator": 200, "admin": 200, "auditor": 200, "outsider": 200},
    ),
]


@pytest.mark.parametrize("name,args,expected", PAGES, ids=[page[0] for page in PAGES])
@pytest.mark.parametrize("who", ["operator", "admin", "auditor", "outsider"])
def test_every_page_answers_each_role_as_expected(cast, name, args, expected, who):
    response = client_for(cast[who]).get(reverse(name, args=args))
    assert response.status_code == expected[who]


@pytest.mark.parametrize("name,args,expected", PAGES, ids=[page[0] for page in PAGES])
def test_anonymous_user_is_sent_to_sign_in(client, name, args, expected):
    url = reverse(name, args=args)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_outsider_gets_the_portal_404_page(outsider):
    response = client_for(outsider).get(reverse("org_dashboard", args=["acme"]))
    assert response.status_code == 404
    assert b"not yours to see" in response.content
    assert b"Acme" not in response.content


def test_unknown_organization_is_a_404_like_another_organization(admin):
    response = client_for(admin).get(reverse("org_dashboard", args=["no-such-org"]))
    assert response.status_code == 404


def test_member_gets_their_membership(operator, acme):
    membership = get_membership(operator, "acme")
    assert membership.organization == acme
    assert membership.role == Role.OPERATOR


def test_outsider_gets_404_from_the_helper(outsider):
    with pytest.raises(Http404):
        get_membership(outsider, "acme")


def test_anonymous_gets_404_from_the_helper(acme):
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(Http404):
        get_membership(AnonymousUser(), "acme")


@pytest.mark.parametrize(
    "who,roles,allowed",
    [
        ("operator", [Role.ADMIN], False),
        ("auditor", [Role.ADMIN], False),
        ("admin", [Role.ADMIN], True),
        ("auditor", [Role.ADMIN, Role.AUDITOR], True),
        ("operator", [Role.ADMIN, Role.AUDITOR], False),
        ("operator", [Role.OPERATOR], True),
    ],
)
def test_wrong_role_gets_403_from_the_helper(cast, who, roles, allowed):
    if allowed:
        assert get_membership(cast[who], "acme", roles=roles).role in roles
    else:
        with pytest.raises(PermissionDenied, match="This page is for the"):
            get_membership(cast[who], "acme", roles=roles)


def test_a_user_holds_different_roles_in_different_organizations(operator, globex):
    from .factories import MembershipFactory

    MembershipFactory(user=operator, organization=globex, role=Role.ADMIN)
    assert get_membership(operator, "acme").role == Role.OPERATOR
    assert get_membership(operator, "globex", roles=[Role.ADMIN]).role == Role.ADMIN
    with pytest.raises(PermissionDenied):
        get_membership(operator, "acme", roles=[Role.ADMIN])


def test_membership_is_unique_per_user_and_organization(operator, acme):
    from django.db import IntegrityError, transaction

    from .factories import MembershipFactory

    with pytest.raises(IntegrityError), transaction.atomic():
        MembershipFactory(user=operator, organization=acme, role=Role.ADMIN)
