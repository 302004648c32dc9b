"""A refusal tells the operator the rule and every endpoint that put the request outside it."""

from types import SimpleNamespace

from approvals.decision import decide
from approvals.models import ApprovalSettings, ScopeMode

OSQUERY = SimpleNamespace(key="run_osquery", category="recommended", needs_auto_approval=True)


def test_the_refusal_names_each_endpoint_outside_the_scope_in_order():
    settings = ApprovalSettings(
        auto_approval_enabled=True,
        auto_approved_actions=["run_osquery"],
        scope_mode=ScopeMode.ALL,
        scope_exceptions=["db-01.acme.test", "db-02.acme.test"],
    )

    decision = decide(OSQUERY, settings, ["db-02.acme.test", "web-01.acme.test", "db-01.acme.test"])

    assert decision.refused
    assert decision.refusal == (
        "Auto-approval must be enabled in order to use this response action. "
        "Outside the automatic-approval scope: db-02.acme.test, db-01.acme.test."
    )
    assert decision.out_of_scope == ("db-02.acme.test", "db-01.acme.test")


def test_with_auto_approval_off_the_refusal_names_only_the_rule():
    settings = ApprovalSettings(
        auto_approval_enabled=False,
        auto_approved_actions=["run_osquery"],
        scope_mode=ScopeMode.ALL,
        scope_exceptions=["db-01.acme.test"],
    )

    decision = decide(OSQUERY, settings, ["db-01.acme.test"])

    assert decision.refusal == "Auto-approval must be enabled in order to use this response action."
