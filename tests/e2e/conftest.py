"""Browser tests: Playwright drives the system Chromium against pytest-django's live server.

They need Chromium (`apt-get install chromium`) and PostgreSQL (the live server's database is
emptied between tests, which the audit table's append-only trigger refuses on SQLite). Without
either they skip with the reason; with CI=true a missing one fails instead. The accessibility
test also needs axe-core (`npm install --no-save axe-core@4`, or its axe.min.js in AXE_CORE_JS).
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
PROJECT = Path(__file__).resolve().parents[2]
SCREENSHOTS = PROJECT / "test-results"
VIEWPORT = {"width": 1280, "height": 900}
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
    # The demo cast alone: a test makes the history it needs (the tour writes the demo's month).
    call_command("seed_demo", force=True, history=False, verbosity=0)
    # seed_demo keeps existing passwords; these tests sign in with the demo one.
    for user in get_user_model().objects.all():
        user.set_password(PASSWORD)
        user.save(update_fields=["password"])


def new_page(browser, base_url: str, **context_options):
    """A page in a fresh browser context (its own cookies) on the portal at `base_url`."""
    context = browser.new_context(viewport=VIEWPORT, **context_options)
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.base_url = base_url
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    return page


def _close(pages, request) -> None:
    failed = getattr(request.node, "failed_call", False)
    for n, page in enumerate(pages):
        if failed:
            SCREENSHOTS.mkdir(exist_ok=True)
            name = re.sub(r"[^\w.-]+", "_", request.node.nodeid) + (f"-{n}" if n else "")
            page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        page.context.close()


@pytest.fixture
def portal(e2e_db, live_server, browser, request):
    """A fresh browser context on the live portal; a failing test leaves a screenshot."""
    page = new_page(browser, live_server.url)
    yield page
    _close([page], request)


@pytest.fixture
def browser_of(portal, browser, request):
    """browser_of(username): another person's browser (own context), signed in to the portal.

    Closed at the end of the test; a failing test leaves a screenshot of each.
    """
    pages = []

    def open_for(username: str, **context_options):
        page = new_page(browser, portal.base_url, **context_options)
        pages.append(page)
        sign_in(page, username)
        return page

    yield open_for
    _close(pages, request)


@pytest.fixture(scope="session")
def axe_core_js() -> Path:
    """axe-core's script: AXE_CORE_JS, or the one `npm install axe-core@4` put in the project."""
    path = Path(os.environ.get("AXE_CORE_JS") or PROJECT / "node_modules/axe-core/axe.min.js")
    if not path.is_file():
        _missing(
            f"the accessibility test needs axe-core at {path}: run "
            "`npm install --no-save axe-core@4` in the project, or set AXE_CORE_JS"
        )
    return path


def sign_in(page, username: str, password: str = PASSWORD) -> None:
    page.goto(page.base_url + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def go(page, path: str) -> None:
    page.goto(page.base_url + path)


def tab_to(page, target, *, limit: int = 60) -> None:
    """Press Tab until `target` (a locator) has the keyboard focus; fail after `limit` presses."""
    element = target.element_handle()
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("element => element === document.activeElement", element):
            return
    raise AssertionError(f"{target} did not get the focus in {limit} presses of Tab")


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
