"""The shared cast: an operator, an admin and an auditor of `acme`, and an outsider of `globex`;
`second_admin`, another admin of `acme`, where two are needed."""

import os

import pytest
from django.db import connection
from django.test import Client

from actions.models import ResponseAction
from actions.sync import sync_catalog
from responseportal.models import Role

from .factories import MembershipFactory, OrganizationFactory, UserFactory

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def acme(db):
    return OrganizationFactory(slug="acme", name="Acme Corporation")


@pytest.fixture
def globex(db):
    return OrganizationFactory(slug="globex", name="Globex Corporation")


def _member(username, organization, role):
    user = UserFactory(username=username)
    MembershipFactory(user=user, organization=organization, role=role)
    return user


@pytest.fixture
def operator(acme):
    return _member("operator", acme, Role.OPERATOR)


@pytest.fixture
def admin(acme):
    return _member("acme-admin", acme, Role.ADMIN)


@pytest.fixture
def second_admin(acme):
    """Another admin of `acme`, for what needs two distinct admins (two-person approval)."""
    return _member("acme-admin-2", acme, Role.ADMIN)


@pytest.fixture
def auditor(acme):
    return _member("acme-auditor", acme, Role.AUDITOR)


@pytest.fixture
def outsider(globex):
    return _member("globex-admin", globex, Role.ADMIN)


@pytest.fixture
def cast(operator, admin, auditor, outsider):
    return {"operator": operator, "admin": admin, "auditor": auditor, "outsider": outsider}


@pytest.fixture
def csrf_client():
    """A client that enforces CSRF like a browser would meet it."""
    return Client(enforce_csrf_checks=True)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def requires_postgresql(db):
    """Skip on a laptop running SQLite; in CI (CI=true) a missing PostgreSQL is a failure."""
    if connection.vendor != "postgresql":
        if IN_CI:
            pytest.fail("CI=true but the tests are not running on PostgreSQL: set DATABASE_URL.")
        pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://… to run it")


@pytest.fixture(autouse=True)
def _static_files_without_collectstatic(settings):
    """Serve static files from the apps, as under DEBUG, so tests need no collectstatic."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _instant_simulated_executor(settings):
    """Requests run in-process in the tests; the simulated executor need not take its time."""
    settings.SIMULATED_EXECUTOR_DELAY = 0


@pytest.fixture(autouse=True)
def _catalog_after_a_flush(request):
    """A transactional test's flush empties the catalog that a migration seeds: put it back.

    pytest-django runs the transactional tests last, each ending with a flush, so the one after
    would otherwise find no actions, depending on the order the tests happen to run in.
    """
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or (
        marker is not None and marker.kwargs.get("transaction", False)
    )
    if not transactional:
        return
    request.getfixturevalue("transactional_db")
    if not ResponseAction.objects.exists():
        sync_catalog()
