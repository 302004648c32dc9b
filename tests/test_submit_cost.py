"""What one automatically approved submission costs the web process: its statements, one
transaction, and no second read of what the service already holds. A regression fails here
before it shows in the benchmark."""

import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from approvals.execution import steps as execution_steps
from approvals.execution import tasks
from approvals.models import ActionRequest, ApprovalMode, RequestStatus

from .approvals_helpers import submit, turn_on_auto_approval
from .conftest import client_for

pytestmark = pytest.mark.django_db

# The helper's read of the catalog; the savepoint and its release (a test runs in a
# transaction); the operator's role, the settings (locked), the request, its targets, the
# admins to tell, the notification and the queued status: ten. Then three audit events
# (submitted, auto-approved, queued), each what audit.chain spends on one: lock the
# organization's chain head, insert the event.
OWN_STATEMENTS = 10
PER_AUDIT_EVENT = 2
MOST_STATEMENTS = OWN_STATEMENTS + 3 * PER_AUDIT_EVENT

_FROM = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"(\w+)"', re.IGNORECASE)


def tables_read(captured) -> list[str]:
    """The first table of each SELECT, in order."""
    return [
        _FROM.search(query["sql"])[1]
        for query in captured
        if query["sql"].lstrip().upper().startswith("SELECT") and _FROM.search(query["sql"])
    ]


@pytest.fixture
def automatic(acme, operator, admin, monkeypatch):
    """Automatic approval on in `acme`; the workers' queue replaced by a list of request ids."""
    turn_on_auto_approval(acme)
    sent = []
    monkeypatch.setattr(tasks.execute_request, "delay", sent.append)
    submit(acme, operator, endpoints=["warm-up.acme.test"])  # what is cached on first use is
    sent.clear()
    return sent


def test_an_automatic_approval_costs_at_most_its_statements(
    acme, operator, automatic, django_assert_max_num_queries
):
    with django_assert_max_num_queries(MOST_STATEMENTS):
        created = submit(acme, operator, submission_token=uuid.uuid4())
    assert (created.status, created.approval_mode) == (RequestStatus.QUEUED, ApprovalMode.AUTO)


def test_the_forms_post_costs_its_page_and_the_submission_only(
    acme, operator, automatic, django_assert_max_num_queries
):
    """The session, the user, the operator's memberships (the two-factor policy's and the
    page's), the catalog's action: five more than the submission, less its catalog read."""
    client = client_for(operator)
    url = reverse("new_request", args=["acme", "isolate_endpoint"])
    form = {"endpoints": "web-09.acme.test", "description": "Beaconing"}
    with django_assert_max_num_queries(MOST_STATEMENTS - 1 + 5):
        response = client.post(url, {"submission_token": str(uuid.uuid4()), **form})
    assert response.status_code == 302
    created = ActionRequest.objects.get(targets__value="web-09.acme.test")
    assert created.status == RequestStatus.QUEUED


def test_it_reads_neither_the_request_nor_the_settings_twice(acme, operator, automatic):
    with CaptureQueriesContext(connection) as captured:
        submit(acme, operator, submission_token=uuid.uuid4())
    read = tables_read(captured.captured_queries)
    assert "approvals_actionrequest" not in read  # not even to look for the submission token
    assert read.count("approvals_approvalsettings") == 1
    assert read.count("responseportal_membership") <= 2  # the operator's role, the admins


def test_a_repeated_token_still_finds_the_first_request(acme, operator, automatic):
    token = uuid.uuid4()
    first = submit(acme, operator, submission_token=token)
    again = submit(acme, operator, submission_token=token)
    assert again.pk == first.pk
    assert ActionRequest.objects.filter(requester=operator).count() == 2  # with the warm-up
    assert list(first.events.order_by("id").values_list("verb", flat=True)) == [
        "request.submitted",
        "request.auto_approved",
        "execution.queued",
    ]


@pytest.mark.django_db(transaction=True)
def test_it_is_one_transaction_and_the_workers_hear_of_it_after_commit(
    requires_postgresql, acme, operator, automatic
):
    with CaptureQueriesContext(connection) as captured:
        created = submit(acme, operator, submission_token=uuid.uuid4())
    statements = [query["sql"] for query in captured.captured_queries]
    # The catalog's action is read first (the helper looks it up), outside the transaction.
    assert statements[1] == "BEGIN" and statements[-1] == "COMMIT"
    assert statements.count("BEGIN") == 1
    assert automatic == [created.pk]
    stored = ActionRequest.objects.get(pk=created.pk)
    assert stored.status == RequestStatus.QUEUED and stored.queued_at is not None


def test_a_broker_that_is_down_leaves_it_queued_for_the_periodic_resend(
    acme, operator, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    turn_on_auto_approval(acme)

    def down(*args, **kwargs):
        raise ConnectionRefusedError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.execute_request, "delay", down)
    with django_capture_on_commit_callbacks(execute=True):
        created = submit(acme, operator, submission_token=uuid.uuid4())
    stored = ActionRequest.objects.get(pk=created.pk)
    assert stored.status == RequestStatus.QUEUED
    assert "the periodic re-send (dispatch_stranded) will deliver it" in caplog.text

    sent = []
    monkeypatch.setattr(tasks.execute_request, "delay", sent.append)
    later = timedelta(hours=1)
    with django_capture_on_commit_callbacks(execute=True):
        resent = execution_steps.redispatch_stranded(waited=timedelta(0), idle=later, silent=later)
    assert (resent, sent) == (1, [created.pk])
