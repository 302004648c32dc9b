"""The decision rule, combination by combination (DESIGN §3–§4)."""

from types import SimpleNamespace

import pytest

from approvals.decision import AUTO_APPROVAL_REQUIRED_MESSAGE, decide
from approvals.models import ApprovalMode, ApprovalSettings, ScopeMode

NOT_REQUIRED = SimpleNamespace(
    key="link_workbench_alert", category="not_required", needs_auto_approval=False
)
ISOLATE = SimpleNamespace(key="isolate_endpoint", category="critical", needs_auto_approval=False)
SHELL = SimpleNamespace(key="start_remote_shell", category="recommended", needs_auto_approval=False)
OSQUERY = SimpleNamespace(key="run_osquery", category="recommended", needs_auto_approval=True)

AUTO, MANUAL, NONE, REFUSED = (
    ApprovalMode.AUTO,
    ApprovalMode.MANUAL,
    ApprovalMode.NOT_REQUIRED,
    None,
)


def settings(master: bool, ticked: bool, action_key: str) -> ApprovalSettings:
    return ApprovalSettings(
        auto_approval_enabled=master,
        auto_approved_actions=[action_key, "scan_for_malware"] if ticked else ["scan_for_malware"],
        scope_mode=ScopeMode.ALL,
        # Host names and IPv4 addresses: the list can tell targets of both kinds apart.
        scope_exceptions=["db-01.acme.test", "10.0.0.99"],
    )


IN_SCOPE = ["web-01.acme.test", "10.0.0.5"]
OUT_OF_SCOPE = ["web-01.acme.test", "db-01.acme.test"]

# action, master switch, action ticked, endpoints, expected mode
TABLE = [
    # Approval not required: always runs, whatever the settings and the scope.
    *[
        (NOT_REQUIRED, master, ticked, endpoints, NONE)
        for master in (True, False)
        for ticked in (True, False)
        for endpoints in (IN_SCOPE, OUT_OF_SCOPE)
    ],
    # Critical and Recommended: auto only with the switch on, the action ticked, all in scope.
    (ISOLATE, True, True, IN_SCOPE, AUTO),
    (ISOLATE, True, True, OUT_OF_SCOPE, MANUAL),
    (ISOLATE, True, False, IN_SCOPE, MANUAL),
    (ISOLATE, True, False, OUT_OF_SCOPE, MANUAL),
    (ISOLATE, False, True, IN_SCOPE, MANUAL),
    (ISOLATE, False, True, OUT_OF_SCOPE, MANUAL),
    (ISOLATE, False, False, IN_SCOPE, MANUAL),
    (ISOLATE, False, False, OUT_OF_SCOPE, MANUAL),
    (SHELL, True, True, IN_SCOPE, AUTO),
    (SHELL, False, True, IN_SCOPE, MANUAL),
    # Needs auto-approval: refused wherever it would otherwise wait for a decision.
    (OSQUERY, True, True, IN_SCOPE, AUTO),
    (OSQUERY, True, True, OUT_OF_SCOPE, REFUSED),
    (OSQUERY, True, False, IN_SCOPE, REFUSED),
    (OSQUERY, True, False, OUT_OF_SCOPE, REFUSED),
    (OSQUERY, False, True, IN_SCOPE, REFUSED),
    (OSQUERY, False, True, OUT_OF_SCOPE, REFUSED),
    (OSQUERY, False, False, IN_SCOPE, REFUSED),
    (OSQUERY, False, False, OUT_OF_SCOPE, REFUSED),
]


@pytest.mark.parametrize("action,master,ticked,endpoints,expected", TABLE)
def test_decision_table(action, master, ticked, endpoints, expected):
    decision = decide(action, settings(master, ticked, action.key), endpoints)
    assert decision.mode == expected
    assert decision.refused is (expected is None)
    if expected is None:
        assert decision.refusal.startswith(AUTO_APPROVAL_REQUIRED_MESSAGE)


def test_refusal_is_the_sentence_of_the_catalog():
    decision = decide(OSQUERY, settings(False, True, OSQUERY.key), IN_SCOPE)
    assert decision.refusal == (
        "Auto-approval must be enabled in order to use this response action."
    )


def test_refusal_names_the_endpoints_outside_the_scope():
    decision = decide(OSQUERY, settings(True, True, OSQUERY.key), OUT_OF_SCOPE)
    assert decision.out_of_scope == ("db-01.acme.test",)
    assert "db-01.acme.test" in decision.refusal


def test_selected_scope_sends_unlisted_endpoints_to_an_admin():
    selected = ApprovalSettings(
        auto_approval_enabled=True,
        auto_approved_actions=["isolate_endpoint"],
        scope_mode=ScopeMode.SELECTED,
        scope_selected=["web-01.acme.test"],
        scope_exceptions=["web-01.acme.test"],  # ignored in selected mode
    )
    assert decide(ISOLATE, selected, ["web-01.acme.test"]).mode == AUTO
    decision = decide(ISOLATE, selected, ["web-01.acme.test", "web-02.acme.test"])
    assert decision.mode == MANUAL
    assert decision.out_of_scope == ("web-02.acme.test",)


def test_actions_without_endpoints_follow_the_switch_alone():
    assert decide(ISOLATE, settings(True, True, ISOLATE.key), []).mode == AUTO
    assert decide(ISOLATE, settings(False, True, ISOLATE.key), []).mode == MANUAL


# The adversarial run's exceptions, and what it sent past them (issue 17).
EXCEPTIONS = ["10.0.0.5", "web-01.acme.test"]
SIDESTEPS = [
    "10.0.0.5",
    "::ffff:10.0.0.5",
    "::ffff:a00:5",
    "0:0:0:0:0:ffff:0a00:0005",
    "::10.0.0.5",
    "64:ff9b::10.0.0.5",
    "0x0a000005",
    "167772165",
    "10.5",
    "012.0.0.5",
    "web-01",
    "WEB-01.Acme.Test.",
    "web-01.acme",
    "6f9619ff-8b86-d011-b42d-00c04fc964ff",
    "{6F9619FF-8B86-D011-B42D-00C04FC964FF}",
]


def excepting(*endpoints: str) -> ApprovalSettings:
    return ApprovalSettings(
        auto_approval_enabled=True,
        auto_approved_actions=["scan_for_malware", "run_osquery"],
        scope_mode=ScopeMode.ALL,
        scope_exceptions=list(endpoints),
    )


SCAN = SimpleNamespace(key="scan_for_malware", category="critical", needs_auto_approval=False)
SCAN_OSQUERY = SimpleNamespace(key="run_osquery", category="recommended", needs_auto_approval=True)


@pytest.mark.parametrize("endpoint", SIDESTEPS)
def test_no_spelling_of_an_excepted_machine_is_approved_automatically(endpoint):
    decision = decide(SCAN, excepting(*EXCEPTIONS), ["web-02.acme.test", endpoint])
    assert decision.mode == MANUAL
    assert decision.out_of_scope == (endpoint,)


@pytest.mark.parametrize("endpoint", SIDESTEPS)
def test_an_action_that_needs_auto_approval_is_refused_for_any_spelling(endpoint):
    decision = decide(SCAN_OSQUERY, excepting(*EXCEPTIONS), [endpoint])
    assert decision.refused
    assert decision.refusal.endswith(f"Outside the automatic-approval scope: {endpoint}.")


@pytest.mark.parametrize(
    "endpoint", ["10.0.0.6", "web-02.acme.test", "web-010.acme.test", "web-01.acme.org"]
)
def test_other_machines_of_the_kinds_the_list_uses_run_at_once(endpoint):
    assert decide(SCAN, excepting(*EXCEPTIONS), [endpoint]).mode == AUTO


# Two-person approval: the number of admins a waiting request needs; none when it runs at once.
def needing(master: bool, ticked: bool, action_key: str, count: int) -> ApprovalSettings:
    counted = settings(master, ticked, action_key)
    counted.approvals_needed = {action_key: count, "scan_for_malware": 3}
    return counted


# action, master switch, action ticked, endpoints, approvals set for the action, expected
APPROVALS_TABLE = [
    *[(NOT_REQUIRED, True, True, IN_SCOPE, count, NONE, 0) for count in (1, 2, 3)],
    *[(ISOLATE, True, True, IN_SCOPE, count, AUTO, 0) for count in (1, 2, 3)],
    *[(ISOLATE, True, True, OUT_OF_SCOPE, count, MANUAL, count) for count in (1, 2, 3)],
    *[(ISOLATE, True, False, IN_SCOPE, count, MANUAL, count) for count in (1, 2, 3)],
    *[(ISOLATE, False, True, IN_SCOPE, count, MANUAL, count) for count in (1, 2, 3)],
    *[(SHELL, False, False, [], count, MANUAL, count) for count in (1, 2, 3)],
    *[(OSQUERY, True, True, IN_SCOPE, count, AUTO, 0) for count in (1, 2, 3)],
    *[(OSQUERY, False, True, IN_SCOPE, count, REFUSED, 0) for count in (1, 2, 3)],
]


@pytest.mark.parametrize("action,master,ticked,endpoints,count,mode,needed", APPROVALS_TABLE)
def test_approvals_needed_table(action, master, ticked, endpoints, count, mode, needed):
    decision = decide(action, needing(master, ticked, action.key, count), endpoints)
    assert (decision.mode, decision.approvals_needed) == (mode, needed)


def test_an_action_not_listed_needs_one_admin():
    listed_for_another = ApprovalSettings(approvals_needed={"scan_for_malware": 3})
    assert decide(ISOLATE, listed_for_another, IN_SCOPE).approvals_needed == 1
    assert decide(ISOLATE, ApprovalSettings(), IN_SCOPE).approvals_needed == 1


# Break-glass: operators run an allowed action at once, to be reviewed afterwards.

BREAK_GLASS = ApprovalMode.BREAK_GLASS


def break_glass_settings(enabled: bool, allowed: list[str], auto: bool = False):
    chosen = settings(auto, auto, ISOLATE.key)
    chosen.break_glass_enabled = enabled
    chosen.break_glass_actions = allowed
    return chosen


# action, break-glass on for the organization, actions allowed, endpoints, auto-approval on,
# expected mode (None: refused), words of the refusal
BREAK_GLASS_TABLE = [
    (ISOLATE, True, ["isolate_endpoint"], IN_SCOPE, False, BREAK_GLASS, ""),
    (SHELL, True, ["start_remote_shell"], IN_SCOPE, False, BREAK_GLASS, ""),
    # Ticked anyway where automatic approval would run it: it is audited as break-glass.
    (ISOLATE, True, ["isolate_endpoint"], IN_SCOPE, True, BREAK_GLASS, ""),
    (ISOLATE, False, ["isolate_endpoint"], IN_SCOPE, False, REFUSED, "not allowed in this org"),
    (ISOLATE, True, ["start_remote_shell"], IN_SCOPE, False, REFUSED, "not allowed for this"),
    (ISOLATE, True, [], IN_SCOPE, False, REFUSED, "not allowed for this"),
    (ISOLATE, True, ["isolate_endpoint"], OUT_OF_SCOPE, False, REFUSED, "db-01.acme.test"),
    (ISOLATE, True, ["isolate_endpoint"], OUT_OF_SCOPE, True, REFUSED, "outside the organiz"),
    # Actions that need automatic approval never break glass, even when listed or auto-approved.
    (OSQUERY, True, ["run_osquery"], IN_SCOPE, False, REFUSED, "can never break glass"),
    (OSQUERY, True, ["run_osquery"], IN_SCOPE, True, REFUSED, "can never break glass"),
    # Approval not required: nothing to break.
    (NOT_REQUIRED, True, ["link_workbench_alert"], IN_SCOPE, False, REFUSED, "only for Critical"),
]


@pytest.mark.parametrize("action,enabled,allowed,endpoints,auto,expected,words", BREAK_GLASS_TABLE)
def test_break_glass_table(action, enabled, allowed, endpoints, auto, expected, words):
    decision = decide(
        action, break_glass_settings(enabled, allowed, auto), endpoints, break_glass=True
    )
    assert decision.mode == expected
    assert decision.refused is (expected is None)
    assert words in decision.refusal
    if expected is None:
        assert decision.refusal.endswith(".")


def test_without_break_glass_the_same_settings_decide_as_before():
    chosen = break_glass_settings(True, ["isolate_endpoint"])
    assert decide(ISOLATE, chosen, IN_SCOPE).mode == MANUAL
    assert decide(OSQUERY, chosen, IN_SCOPE).refused
