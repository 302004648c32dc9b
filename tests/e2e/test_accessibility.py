"""The main pages pass axe-core's checks and keep to the Content Security Policy."""

from .conftest import go, new_page, sign_in
from .history import acme_history

SERIOUS = {"critical", "serious"}


def main_pages(history) -> list[tuple]:
    """(who works there, path) of every main page, from signing in to the script library.

    And the portal's own 403 and 404 pages, marked by the status they answer with.
    """
    slug = history.organization.slug
    return [
        (None, "/accounts/login/"),
        ("operator", "/orgs/"),
        ("operator", f"/orgs/{slug}/requests/new/"),
        ("operator", f"/orgs/{slug}/requests/new/isolate_endpoint/"),
        ("operator", f"/orgs/{slug}/scripts/"),
        ("operator", f"/orgs/{slug}/queue/", 403),
        ("acme-admin", f"/orgs/{slug}/"),
        ("acme-admin", "/actions/"),
        ("acme-admin", "/actions/isolate_endpoint/"),
        ("acme-admin", f"/orgs/{slug}/requests/"),
        ("acme-admin", f"/orgs/{slug}/requests/{history.pending[0].uuid}/"),
        ("acme-admin", f"/orgs/{slug}/requests/{history.finished.uuid}/"),
        ("acme-admin", f"/orgs/{slug}/queue/"),
        ("acme-admin", f"/orgs/{slug}/settings/approval/"),
        ("acme-auditor", f"/orgs/{slug}/audit/"),
        ("acme-auditor", f"/orgs/{slug}/audit/{history.settings_changed.pk}/"),
        ("globex-admin", f"/orgs/{slug}/", 404),
    ]


def visit(browser, base_url, pages, *, on_open=lambda page: None, **context_options):
    """Yield (page, path) for each main page, in a browser signed in as who works there."""
    opened = {}
    try:
        for who, path, *status in pages:
            if who not in opened:
                opened[who] = new_page(browser, base_url, **context_options)
                on_open(opened[who])
                if who is not None:
                    sign_in(opened[who], who)
            response = opened[who].goto(base_url + path)
            assert response.status == (status[0] if status else 200), path
            yield opened[who], path
    finally:
        for page in opened.values():
            page.context.close()


def _described(violation: dict) -> str:
    where = "; ".join(" ".join(map(str, node["target"])) for node in violation["nodes"][:5])
    return f"{violation['id']} ({violation['impact']}): {violation['help']} at {where}"


def test_main_pages_have_no_critical_or_serious_axe_violations(portal, browser, axe_core_js):
    history = acme_history()
    found = []
    # The portal's CSP refuses scripts it did not serve, such as axe's: this context ignores it.
    for page, path in visit(browser, portal.base_url, main_pages(history), bypass_csp=True):
        # Folded content counts too: the queue's details, the dashboard's table of figures.
        page.locator("details").evaluate_all("all => all.forEach(d => { d.open = true; })")
        page.add_script_tag(path=str(axe_core_js))
        results = page.evaluate("axe.run({resultTypes: ['violations']})")
        assert results["passes"], f"axe checked nothing on {path}"
        found += [
            f"{path}: {_described(violation)}"
            for violation in results["violations"]
            if violation["impact"] in SERIOUS
        ]
    assert found == [], "\n".join(found)


def test_main_pages_break_no_content_security_policy_rule(portal, browser):
    """Nothing the pages do is refused by the CSP, nor logs any other error in the console."""
    # First, that a violation does show in the console, where this test looks for them.
    go(portal, "/accounts/login/")
    with portal.expect_console_message(lambda m: "Content Security Policy" in m.text):
        portal.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">')")

    pages = main_pages(acme_history())
    errors = []

    def listen(page):
        page.on("console", lambda m: m.type == "error" and errors.append((page.url, m.text)))
        page.on("pageerror", lambda error: errors.append((page.url, str(error))))

    for page, _ in visit(browser, portal.base_url, pages, on_open=listen):
        page.wait_for_load_state("load")
    # The 403 and 404 pages' own status shows as an error ("Failed to load resource: the
    # server responded with a status of 403"); anything else is a finding.
    answered = {
        portal.base_url + path: f"status of {status[0]}" for _, path, *status in pages if status
    }
    assert [
        (url, text) for url, text in errors if url not in answered or answered[url] not in text
    ] == []
