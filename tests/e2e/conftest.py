"""Browser tests: Playwright drives the system Chromium against pytest-django's live server.

They need Chromium (`apt-get install chromium`) and PostgreSQL (the live server's database is
emptied between tests, which the audit table's append-only trigger refuses on SQLite). Without
either they skip with the reason; with CI=true a missing one fails instead.
"""

import os
import re
import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

from actions.sync import sync_catalog

from ..conftest import IN_CI

# Playwright's sync API runs an event loop in the test's thread; the ORM calls the tests make
# there are ordinary blocking calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

PASSWORD = "demo-password"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(reason: str):
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def chromium_path() -> str | None:
    return (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )


@pytest.fixture(scope="session")
def browser():
    executable = chromium_path()
    if executable is None:
        _missing("the browser tests need Chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.failed_call = report.failed
    return report


@pytest.fixture
def e2e_db(transactional_db):
    if connection.vendor != "postgresql":
        _missing("the browser tests need PostgreSQL: set DATABASE_URL=postgres://…")
    sync_catalog()
    call_command("seed_demo", force=True, verbosity=0)
    # seed_demo keeps existing passwords; these tests sign in with the demo one.
    for user in get_user_model().objects.all():
        user.set_password(PASSWORD)
        user.save(update_fields=["password"])


@pytest.fixture
def portal(e2e_db, live_server, browser, request):
    """A fresh browser context on the live portal; a failing test leaves a screenshot."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.base_url = live_server.url
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    yield page
    if getattr(request.node, "failed_call", False):
        SCREENSHOTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    context.close()


def sign_in(page, username: str, password: str = PASSWORD) -> None:
    page.goto(page.base_url + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def go(page, path: str) -> None:
    page.goto(page.base_url + path)


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
