"""The Trend Vision One v3.0 response calls, translated to the portal's actions and back.

A call's JSON array of items becomes requests through the same forms and service as the pages:
items that differ only in their target (an endpoint, an object) share one request, so one
decision covers them; an action whose form takes one target makes one request per item. Each
item's target is a task, named `<request uuid>-<target position>`: the request's random UUID
makes it unguessable, and it is looked up in the token's organization only.
"""

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC

from django.core.exceptions import ValidationError

from actions.models import ResponseAction
from actions.validators import refuse_invisible, shown
from approvals import services
from approvals.forms import form_for
from approvals.models import (
    ActionRequest,
    RequestStatus,
    RequestTarget,
    Script,
    TargetStatus,
)
from approvals.transitions import SubmissionRefused
from audit.context import AuditContext

MAX_ITEMS = 100  # the catalog's limit of targets per request
MAX_TEXT = 5_000  # longer than any field the forms accept, so their own message is the one read


class ItemRefused(Exception):
    """One item of a call cannot become a task; its message is the item's 400 answer."""

    def __init__(self, message: str, code: str = "BadRequest"):
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class Item:
    """One item of a call, as the form of its action takes it."""

    data: dict[str, str]
    # The form's field holding one target per line, which items of one request share; None
    # when the form takes one target, so that each item is a request of its own.
    list_field: str | None
    # Trend's name of each form field, for messages.
    names: dict[str, str] = field(default_factory=dict)

    def group(self) -> tuple | None:
        if self.list_field is None:
            return None
        return tuple(sorted((k, v) for k, v in self.data.items() if k != self.list_field))


def _text(item: dict, name: str, *, required: bool = False) -> str:
    value = item.get(name)
    if value is None:
        if required:
            raise ItemRefused(f"{name}: this field is required.")
        return ""
    if not isinstance(value, str):
        raise ItemRefused(f"{name}: expected a string, not {type(value).__name__}.")
    if len(value) > MAX_TEXT:
        raise ItemRefused(f"{name}: expected at most {MAX_TEXT} characters.")
    return value


def _one_line(value: str, name: str) -> str:
    """A target joins the others one per line: a line break would smuggle in another."""
    if len(value.splitlines()) > 1 or value.endswith(("\n", "\r")):
        raise ItemRefused(
            f"{name}: `{shown(value)}` holds a line break: expected one value on one line."
        )
    return value


def _endpoint(item: dict) -> tuple[str, str]:
    """The endpoint an item names, and the Trend field that named it.

    `endpointName` is the target when given (hostname or IP address, as scope lists name
    endpoints), else `agentGuid`; an `agentGuid`, given alone or beside a name, must be a GUID.
    """
    name = _text(item, "endpointName")
    guid = _text(item, "agentGuid")
    if not name and not guid:
        raise ItemRefused("Give endpointName or agentGuid: the endpoint to act on.")
    if guid:
        try:
            refuse_invisible(guid)
        except ValidationError as error:
            raise ItemRefused(f"agentGuid: {error.messages[0]}") from None
        if not _is_guid(guid.lower()):
            raise ItemRefused(
                f"agentGuid: `{shown(guid)}` is not an agent GUID: expected 32 hexadecimal "
                "digits as 8-4-4-4-12."
            )
    if name:
        return _one_line(name, "endpointName"), "endpointName"
    return guid, "agentGuid"


def _isolate(item: dict, organization) -> Item:
    endpoint, named_by = _endpoint(item)
    return Item(
        {"endpoints": endpoint, "description": _text(item, "description")},
        "endpoints",
        {"endpoints": named_by},
    )


def _restore(item: dict, organization) -> Item:
    endpoint, named_by = _endpoint(item)
    return Item({"endpoints": endpoint}, "endpoints", {"endpoints": named_by})


def _collect_file(item: dict, organization) -> Item:
    endpoint, named_by = _endpoint(item)
    return Item(
        {"endpoints": endpoint, "file_path": _text(item, "filePath")},
        None,
        {"endpoints": named_by, "file_path": "filePath"},
    )


def _terminate_process(item: dict, organization) -> Item:
    endpoint, named_by = _endpoint(item)
    return Item(
        {
            "endpoints": endpoint,
            "sha1": _text(item, "fileSha1"),
            "file_name": _text(item, "fileName"),
        },
        None,
        {"endpoints": named_by, "sha1": "fileSha1", "file_name": "fileName"},
    )


def _run_script(item: dict, organization) -> Item:
    endpoint, named_by = _endpoint(item)
    name = _text(item, "fileName", required=True)
    try:
        refuse_invisible(name)  # NUL and other controls included, before the database sees it
    except ValidationError as error:
        raise ItemRefused(f"fileName: {error.messages[0]}") from None
    script = Script.objects.filter(organization=organization, name=name).only("pk").first()
    if script is None:
        raise ItemRefused(
            f"fileName: `{shown(name)}` is not in {organization.name}'s script library: "
            "expected the name of a script uploaded there."
        )
    return Item(
        {"endpoints": endpoint, "script": str(script.pk), "parameters": _text(item, "parameter")},
        "endpoints",
        {"endpoints": named_by, "script": "fileName", "parameters": "parameter"},
    )


# Trend's object fields and the portal's object types of Add Objects to Block List.
BLOCKED_TYPES = {"url": "url", "domain": "domain", "ip": "ip", "fileSha1": "sha1"}
TREND_OBJECT_FIELDS = (*BLOCKED_TYPES, "fileSha256", "senderMailAddress")


def _block(item: dict, organization) -> Item:
    given = [name for name in TREND_OBJECT_FIELDS if name in item]
    if len(given) != 1:
        raise ItemRefused(
            "Give exactly one object to block, as url, domain, ip or fileSha1"
            + (f": this item has {', '.join(given)}." if given else ".")
        )
    name = given[0]
    if name not in BLOCKED_TYPES:
        raise ItemRefused(
            f"{name}: Add Objects to Block List takes url, domain, ip or fileSha1 objects."
        )
    value = _one_line(_text(item, name), name)
    return Item(
        {"objects": f"{BLOCKED_TYPES[name]}:{value}", "description": _text(item, "description")},
        "objects",
        {"objects": name},
    )


def _quarantine(item: dict, organization) -> Item:
    if "uniqueId" in item and "messageId" not in item:
        raise ItemRefused("uniqueId is not supported here: give messageId and mailBox.")
    return Item(
        {"mailbox": _text(item, "mailBox"), "message_id": _text(item, "messageId")},
        None,
        {"mailbox": "mailBox", "message_id": "messageId"},
    )


def _disable_account(item: dict, organization) -> Item:
    return Item(
        {"account": _text(item, "accountName"), "description": _text(item, "description")},
        None,
        {"account": "accountName"},
    )


@dataclass(frozen=True)
class Call:
    path: str  # under /v3.0/response/
    action_key: str
    trend_action: str  # the `action` of its tasks, as Trend names it
    item: Callable[[dict, object], Item]


CALLS = (
    Call("endpoints/isolate", "isolate_endpoint", "isolate", _isolate),
    Call("endpoints/restore", "restore_connection", "restoreIsolate", _restore),
    Call("endpoints/collectFile", "collect_file", "collectFile", _collect_file),
    Call("endpoints/terminateProcess", "terminate_process", "terminateProcess", _terminate_process),
    Call("endpoints/runScript", "run_custom_script", "runCustomScript", _run_script),
    Call("suspiciousObjects", "add_to_block_list", "block", _block),
    Call("emails/quarantine", "quarantine_email", "quarantineMessage", _quarantine),
    Call("domainAccounts/disable", "disable_user_account", "disableAccount", _disable_account),
)
CALL_BY_PATH = {call.path: call for call in CALLS}
CALL_BY_ACTION = {call.action_key: call for call in CALLS}


def supported_calls() -> list[str]:
    """The calls the catalog has now, as `POST /v3.0/response/…`."""
    active = set(
        ResponseAction.objects.filter(active=True, key__in=CALL_BY_ACTION).values_list(
            "key", flat=True
        )
    )
    calls = [f"POST /v3.0/response/{c.path}" for c in CALLS if c.action_key in active]
    return [*calls, "GET /v3.0/response/tasks/{taskId}"]


def task_id(target: RequestTarget, action_request: ActionRequest) -> str:
    return f"{action_request.uuid}-{target.position}"


_TASK_ID = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-(\d{1,6})")


def find_task(organization, text: str) -> RequestTarget | None:
    """The target a task id names, in `organization` only, for the calls of CALLS only."""
    match = _TASK_ID.fullmatch(text)
    if match is None:
        return None
    return (
        RequestTarget.objects.select_related("request__action", "request__requester")
        .filter(
            request__uuid=uuid.UUID(match[1]),
            request__organization=organization,
            request__action__key__in=CALL_BY_ACTION,
            position=int(match[2]),
        )
        .first()
    )


# Submitting


@dataclass
class Outcome:
    """What one item became: a task (its target), or a refusal."""

    target: RequestTarget | None = None
    request: ActionRequest | None = None
    refusal: ItemRefused | None = None


def _messages(form, names: dict[str, str]) -> str:
    parts = []
    for name, messages in form.errors.items():
        for message in messages:
            message = message.removeprefix("Line 1: ")
            parts.append(message if name == "__all__" else f"{names.get(name, name)}: {message}")
    return " ".join(parts)


def _form(call: Call, organization, data: dict[str, str]):
    return form_for(call.action_key)(
        {**data, "submission_token": str(uuid.uuid4())}, organization=organization
    )


def submit_items(
    call: Call, items: list, *, organization, actor, context: AuditContext
) -> list[Outcome]:
    """Each item's outcome, in order: refused with the form's or the decision rule's message,
    or the task it became."""
    action = ResponseAction.objects.get(key=call.action_key, active=True)
    outcomes = [Outcome() for _ in items]
    accepted: list[tuple[int, Item, str]] = []  # (index, item, its canonical target)
    seen: dict[tuple, int] = {}
    for index, raw in enumerate(items):
        try:
            if not isinstance(raw, dict):
                raise ItemRefused(f"Item {index + 1}: expected a JSON object.")
            item = call.item(raw, organization)
            form = _form(call, organization, item.data)
            if not form.is_valid():
                raise ItemRefused(_messages(form, item.names))
            target = form.targets()[0].value
            earlier = seen.get((item.group(), target))
            if earlier is not None and item.list_field is not None:
                raise ItemRefused(
                    f"`{shown(target)}` is already the target of item {earlier + 1} of this call."
                )
            seen[(item.group(), target)] = index
            accepted.append((index, item, target))
        except ItemRefused as refusal:
            outcomes[index].refusal = refusal
    groups: dict[object, list[tuple[int, Item, str]]] = {}
    for index, item, target in accepted:
        key = item.group() if item.list_field is not None else ("item", index)
        groups.setdefault(key, []).append((index, item, target))
    for members in groups.values():
        first = members[0][1]
        data = dict(first.data)
        if first.list_field is not None:
            data[first.list_field] = "\n".join(
                item.data[first.list_field] for _, item, _ in members
            )
        form = _form(call, organization, data)
        try:
            if not form.is_valid():
                raise ItemRefused(_messages(form, first.names))
            try:
                created = services.submit_request(
                    organization,
                    action,
                    actor=actor,
                    parameters=form.parameters(),
                    targets=form.targets(),
                    endpoints=form.endpoints(),
                    summary=form.summary(),
                    context=context,
                )
            except SubmissionRefused as refusal:
                raise ItemRefused(refusal.message, code="ActionNotAllowed") from None
        except ItemRefused as refusal:
            for index, _, _ in members:
                outcomes[index].refusal = refusal
            continue
        by_value = {t.value: t for t in created.targets.all()}
        for index, _, target in members:
            outcomes[index].target = by_value[target]
            outcomes[index].request = created
    return outcomes


# Reading a task

STATUS_OF_REQUEST = {
    RequestStatus.PENDING: "pendingApproval",
    RequestStatus.REJECTED: "rejected",
    RequestStatus.EXPIRED: "rejected",
    RequestStatus.CANCELLED: "canceled",
    RequestStatus.APPROVED: "queued",
    RequestStatus.QUEUED: "queued",
}
STATUS_OF_TARGET = {
    TargetStatus.WAITING: "queued",
    TargetStatus.IN_PROGRESS: "running",
    TargetStatus.SUCCESSFUL: "succeeded",
    TargetStatus.FAILED: "failed",
    TargetStatus.TERMINATED: "failed",
    TargetStatus.SKIPPED: "failed",
}
# `error.number` of a task, which Trend's clients require beside its code and message.
ERROR_NUMBERS = {"TaskExpired": 1, "TaskRejected": 2, "TaskFailed": 3}


def iso(moment) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _status_and_error(target: RequestTarget, action_request: ActionRequest):
    shown_status = action_request.shown_status
    if shown_status == RequestStatus.EXPIRED:
        expired_at = action_request.decided_at or action_request.expires_at
        return "rejected", (
            "TaskExpired",
            f"The request expired at {iso(expired_at)} without a decision, so it never ran.",
        )
    if shown_status == RequestStatus.REJECTED:
        by = action_request.decided_by.get_username() if action_request.decided_by else "an admin"
        reason = action_request.decision_reason
        return "rejected", (
            "TaskRejected",
            f"Rejected by {by}" + (f": {reason}" if reason else "."),
        )
    if shown_status in STATUS_OF_REQUEST:
        return STATUS_OF_REQUEST[shown_status], None
    status = STATUS_OF_TARGET[TargetStatus(target.status)]
    if status == "failed":
        words = target.get_status_display().lower()
        return status, ("TaskFailed", target.message or f"The task ended {words}.")
    return status, None


def _last_action(target: RequestTarget, action_request: ActionRequest):
    moments = [
        action_request.submitted_at,
        action_request.decided_at,
        action_request.queued_at,
        action_request.started_at,
        target.finished_at,
    ]
    if action_request.shown_status == RequestStatus.EXPIRED:
        moments.append(action_request.expires_at)
    return max(moment for moment in moments if moment is not None)


def task_json(target: RequestTarget) -> dict:
    """A task as Trend Vision One answers it, with its action's own fields."""
    action_request = target.request
    call = CALL_BY_ACTION[action_request.action.key]
    parameters = action_request.parameters
    status, error = _status_and_error(target, action_request)
    last_action = iso(_last_action(target, action_request))
    task = {
        "id": task_id(target, action_request),
        "status": status,
        "action": call.trend_action,
        "createdDateTime": iso(action_request.submitted_at),
        "lastActionDateTime": last_action,
        "description": parameters.get("description", ""),
        "account": action_request.requester.get_username(),
    }
    if error is not None:
        code, message = error
        task["error"] = {"code": code, "message": message, "number": ERROR_NUMBERS[code]}
    if target.kind == "endpoint":
        is_guid = _is_guid(target.value)
        task["agentGuid"] = target.value if is_guid else ""
        task["endpointName"] = target.value
    key = call.action_key
    if key == "collect_file":
        task["filePath"] = parameters.get("file_path", "")
    elif key == "terminate_process":
        task["fileSha1"] = parameters.get("sha1", "")
        if parameters.get("file_name"):
            task["fileName"] = parameters["file_name"]
    elif key == "run_custom_script":
        task["fileName"] = (parameters.get("script") or {}).get("name", "")
        if parameters.get("parameters"):
            task["parameter"] = parameters["parameters"]
    elif key == "add_to_block_list":
        kind, _, value = target.value.partition(":")
        trend_name = {ours: theirs for theirs, ours in BLOCKED_TYPES.items()}.get(kind, kind)
        task[trend_name] = value
    elif key == "quarantine_email":
        task["tasks"] = [
            {
                "mailBox": parameters.get("mailbox", ""),
                "messageId": parameters.get("message_id", ""),
                "lastActionDateTime": last_action,
                "status": status,
            }
        ]
    elif key == "disable_user_account":
        account = parameters.get("account", target.value)
        task["tasks"] = [
            {
                "accountName": account,
                # Microsoft Entra ID names accounts by UPN, on-premises AD by DOMAIN\user.
                "iam": "AAD" if "@" in account else "OPAD",
                "lastActionDateTime": last_action,
                "status": status,
            }
        ]
    return task


def _is_guid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
