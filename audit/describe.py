"""Audit events in words, for people: "acme-admin approved Isolate Endpoint on 2 endpoints".

`describe(event, targets)` is the one place that turns an event into a sentence; every verb the
portal records has its own in SENTENCES (a test holds that). The pages show the sentence first,
with the machine verb and the action key as secondary text; the CSV export and the event's own
page keep the recorded fields as they are.

`in_words(events)` describes a list at once: what the requests concerned act on ("on
web-01.acme.test", "on 2 endpoints") is read in one query for the whole list.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Min

from actions.catalog import BY_KEY

from .models import AuditEvent

# What each kind of target is called, one and many.
TARGET_NOUNS = {
    "endpoint": ("endpoint", "endpoints"),
    "object": ("object", "objects"),
    "alert": ("alert", "alerts"),
    "account": ("account", "accounts"),
    "message": ("message", "messages"),
    "appliance": ("appliance", "appliances"),
    "cve": ("CVE", "CVEs"),
    "url": ("URL", "URLs"),
    "file": ("file sample", "file samples"),
}
# The approval settings as the sentences name them; another field is named by its words.
SETTING_NAMES = {
    "auto_approval_enabled": "automatic approval",
    "auto_approved_actions": "the actions approved automatically",
    "scope_mode": "the scope",
    "pending_lifetime_hours": "how long requests wait",
    "remote_shell_validity_hours": "how long remote shells last",
    "notify_emails": "the extra addresses notified",
    "notify_webhook_url": "the webhook",
    "approvals_needed": "the approvals needed",
    "break_glass_enabled": "break-glass",
    "break_glass_actions": "the break-glass actions",
    "remind_after_minutes": "when admins are reminded",
}
SCOPE_LISTS = {"scope_selected": "selected endpoints", "scope_exceptions": "scope exceptions"}


@dataclass(frozen=True)
class Targets:
    """What one request acts on."""

    count: int
    noun: str  # plural: "endpoints", "objects", or "targets" for a mix
    only: str  # the one target's value, when there is one

    def __str__(self) -> str:
        return f" on {self.only}" if self.count == 1 else f" on {self.count} {self.noun}"


@dataclass(frozen=True)
class Words:
    """What a sentence may name about one event."""

    event: AuditEvent
    request_targets: Targets | None

    @property
    def actor(self) -> str:
        return self.event.actor_username or "the system"

    @property
    def action(self) -> str:
        definition = BY_KEY.get(self.event.action_key)
        return definition.name if definition else (self.event.action_key or "a request")

    @property
    def targets(self) -> str:
        return str(self.request_targets) if self.request_targets else ""

    @property
    def data(self) -> dict[str, Any]:
        return self.event.data if isinstance(self.event.data, dict) else {}

    def field(self, name: str, default: str = "") -> str:
        value = self.data.get(name, default)
        return value if isinstance(value, str) else str(value)


def _results(w: Words) -> str:
    """on 1 of 2 endpoints", from the targets' results the event recorded."""
    results = w.data.get("targets")
    if not isinstance(results, list) or not results:
        return w.targets
    succeeded = sum(1 for r in results if isinstance(r, dict) and r.get("status") == "successful")
    noun = w.request_targets.noun if w.request_targets else "targets"
    return f" on {succeeded} of {len(results)} {noun}"


def _settings(w: Words) -> str:
    # Other settings than the approval settings name themselves (single sign-on's do).
    which = w.data.get("settings")
    which = which if isinstance(which, str) else "approval"
    changed = sorted(name for name in w.data if name != "settings")
    names = [SETTING_NAMES.get(name, name.replace("_", " ")) for name in changed]
    return f"{w.actor} changed the {which} settings: {', '.join(names) if names else 'nothing'}"


def _role(w: Words, which: str) -> str:
    role = w.data.get("role")
    value = role.get(which) if isinstance(role, dict) else None
    return value if isinstance(value, str) else "no role"


def _membership(w: Words, change: str) -> str:
    user = w.field("user", w.actor)
    why = w.field("by", "")
    why = f", by the {why}" if why else ""
    if change == "created":
        return f"{user} joined the organization as {_role(w, 'after')}{why}"
    if change == "removed":
        return f"{user} left the organization (was {_role(w, 'before')}){why}"
    return f"{user} became {_role(w, 'after')} (was {_role(w, 'before')}){why}"


def _scope(w: Words) -> str:
    count = w.data.get("count")
    after = count.get("after") if isinstance(count, dict) else None
    listed = SCOPE_LISTS.get(w.field("list"), "a scope list")
    if after is None:
        return f"{w.actor} replaced the {listed}"
    return f"{w.actor} imported {after} endpoint{'' if after == 1 else 's'} as {listed}"


def _filters(w: Words) -> str:
    return " (filtered)" if w.data.get("filters") else ""


def _approvals(w: Words) -> str:
    approvals = w.data.get("approvals")
    if isinstance(approvals, dict) and "given" in approvals and "needed" in approvals:
        return f" ({approvals['given']} of {approvals['needed']} approvals)"
    return ""


def _review(w: Words) -> str:
    return {"accept": "accepted", "flag": "flagged"}.get(w.field("outcome"), "reviewed")


def _did(what: str) -> Callable[[Words], str]:
    """The actor did `what`: "acme-admin signed in"."""
    return lambda w: f"{w.actor} {what}"


def _did_to_request(what: str, how: str = "") -> Callable[[Words], str]:
    """The actor did `what` to the request: "acme-admin approved Isolate Endpoint on web-01"."""
    return lambda w: f"{w.actor} {what} {w.action}{w.targets}{how}"


def _request_was(what: str) -> Callable[[Words], str]:
    """The request, then `what`: "Isolate Endpoint on web-01 expired without a decision"."""
    return lambda w: f"{w.action}{w.targets} {what}"


SENTENCES: dict[str, Callable[[Words], str]] = {
    "request.submitted": _did_to_request("requested"),
    "request.auto_approved": _request_was("was approved automatically"),
    "request.approved": _did_to_request("approved"),
    "request.approval_added": (
        lambda w: f"{w.actor} added an approval to {w.action}{w.targets}{_approvals(w)}"
    ),
    "request.rejected": _did_to_request("rejected"),
    "request.expired": _request_was("expired without a decision"),
    "request.cancelled": _did_to_request("cancelled"),
    "request.reminded": (
        lambda w: f"The admins were reminded that {w.action}{w.targets} waits for a decision"
    ),
    "request.break_glass": _did_to_request("ran", " with break-glass"),
    "request.reviewed": (
        lambda w: f"{w.actor} {_review(w)} the break-glass run of {w.action}{w.targets}"
    ),
    "request.review_overdue": (
        lambda w: (
            f"The break-glass run of {w.action}{w.targets} is still not reviewed: "
            "the admins were told again"
        )
    ),
    "execution.queued": _request_was("was queued to run"),
    "execution.started": _request_was("started running"),
    "execution.resumed": _request_was("resumed running"),
    "execution.redispatched": _request_was("was sent to the workers again"),
    "execution.succeeded": lambda w: f"{w.action} succeeded{w.targets}",
    "execution.partially_succeeded": lambda w: f"{w.action} succeeded{_results(w)}",
    "execution.failed": lambda w: f"{w.action} failed{w.targets}",
    "execution.terminated": _request_was("was terminated"),
    "remote_shell.ended": lambda w: f"{w.actor} ended the remote shell session{w.targets}",
    "remote_shell.expired": (
        lambda w: f"The remote shell session{w.targets} ended: its validity period was over"
    ),
    "settings.changed": _settings,
    "scope.imported": _scope,
    "script.uploaded": lambda w: f"{w.actor} uploaded the script {w.field('name', 'a script')}",
    "auth.signed_in": _did("signed in"),
    "auth.signed_out": _did("signed out"),
    "auth.sign_in_failed": lambda w: f"A sign-in as {w.field('username', w.actor)} failed",
    "auth.locked_out": (
        lambda w: f"{w.field('username', w.actor)} was locked out after too many failed sign-ins"
    ),
    "auth.attempts_counted": (
        lambda w: (
            f"{w.field('attempts', 'More')} more sign-in attempts were counted, not "
            "recorded one by one"
        )
    ),
    "audit.exported": lambda w: f"{w.actor} exported the audit log as CSV{_filters(w)}",
    "api_token.created": lambda w: f"{w.actor} created the API token {w.field('token')}",
    "api_token.revoked": lambda w: f"{w.actor} revoked the API token {w.field('token')}",
    "second_factor.added": _did("added a second factor"),
    "second_factor.removed": _did("removed a second factor"),
    "second_factor.reset": lambda w: f"The second factors of {w.actor} were reset",
    "recovery_codes.generated": _did("generated new recovery codes"),
    "membership.created": lambda w: _membership(w, "created"),
    "membership.changed": lambda w: _membership(w, "changed"),
    "membership.removed": lambda w: _membership(w, "removed"),
    "organization.second_factor_policy_changed": _did(
        "changed who must sign in with a second factor"
    ),
}


def describe(event: AuditEvent, targets: Targets | None = None) -> str:
    """The event as a sentence; `targets` is what its request acts on (see `in_words`)."""
    sentence = SENTENCES.get(event.verb)
    words = Words(event, targets)
    if sentence is None:
        # A verb without its sentence yet still reads as something that happened.
        text = f"{words.actor}: {event.verb.replace('_', ' ').replace('.', ' ')}"
    else:
        text = sentence(words)
    # Usernames keep their case; only the portal's own words open with a capital.
    return "The system" + text[len("the system") :] if text.startswith("the system") else text


@dataclass(frozen=True)
class Line:
    event: AuditEvent
    sentence: str


def targets_of(request_ids: Iterable[int | None]) -> dict[int, Targets]:
    """What each request acts on, for the sentences, in one query."""
    ids = {pk for pk in request_ids if pk is not None}
    if not ids:
        return {}
    # The request model is named through the events' foreign key: the audit log never imports
    # the approvals app, which builds on it.
    requests = AuditEvent._meta.get_field("request").related_model
    rows = (
        requests.objects.filter(pk__in=ids, targets__isnull=False)
        .values("pk", "targets__kind")
        .annotate(count=Count("targets"), first=Min("targets__value"))
        .order_by()
    )
    kinds: dict[int, list[dict]] = {}
    for row in rows:
        kinds.setdefault(row["pk"], []).append(row)
    found = {}
    for pk, rows in kinds.items():
        count = sum(row["count"] for row in rows)
        noun = TARGET_NOUNS.get(rows[0]["targets__kind"], ("", "targets"))[1]
        found[pk] = Targets(count, noun if len(rows) == 1 else "targets", rows[0]["first"])
    return found


def in_words(events: Iterable[AuditEvent]) -> list[Line]:
    """Each event with its sentence, the requests' targets read in one query."""
    events = list(events)
    targets = targets_of(event.request_id for event in events)
    return [Line(event, describe(event, targets.get(event.request_id))) for event in events]
