"""The Approve and Reject links of the pending-approval e-mail.

A link is a signed token (django.core.signing, with the portal's SECRET_KEY) naming one
request, one admin, one decision and a digest of what the admin read in the e-mail: the
action, the requester, the parameters, the targets and the expiry. It is never a way in: the
page it opens asks the reader to sign in, works only for the admin it was sent to, changes
nothing on GET, and decides only on a POST of its confirmation form. It stops working when
the request is no longer pending (decided, cancelled, expired), when the request's digest no
longer matches, and once it has decided the request (`EmailLinkUse`).
"""

import hashlib
import json
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import reverse

from .models import ActionRequest
from .transitions import APPROVE, REJECT

SALT = "approvals.email-decision-link"


@dataclass(frozen=True)
class DecisionLink:
    request_uuid: uuid.UUID
    admin_id: int
    decision: str
    digest: str


def digest(action_request: ActionRequest) -> str:
    """SHA-256 over what the e-mail tells the admin about the request; a change to any of it
    makes the links sent before stale."""
    canonical = {
        "request": str(action_request.uuid),
        "organization": action_request.organization_id,
        "action": action_request.action.key,
        "requester": action_request.requester_id,
        "parameters": action_request.parameters,
        "targets": [
            [target.kind, target.value]
            for target in action_request.targets.order_by("position").only("kind", "value")
        ],
        "submitted_at": action_request.submitted_at.isoformat(),
        "expires_at": action_request.expires_at.isoformat() if action_request.expires_at else None,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def token(action_request: ActionRequest, admin, decision: str, *, request_digest: str) -> str:
    if decision not in (APPROVE, REJECT):
        raise ValueError(f"{decision!r} is not a decision: expected {APPROVE} or {REJECT}.")
    payload = {"r": str(action_request.uuid), "a": admin.pk, "d": decision, "h": request_digest}
    return signing.dumps(payload, salt=SALT)


def read(signed: str) -> DecisionLink | None:
    """The link a token stands for; None if it was not signed by this portal or was altered."""
    try:
        payload = signing.loads(signed, salt=SALT)
        return DecisionLink(
            request_uuid=uuid.UUID(payload["r"]),
            admin_id=int(payload["a"]),
            decision=payload["d"] if payload["d"] in (APPROVE, REJECT) else "",
            digest=str(payload["h"]),
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None


def urls_for(action_request: ActionRequest, admin) -> dict[str, str]:
    """The admin's absolute Approve and Reject links for the request."""
    request_digest = digest(action_request)
    return {
        f"{decision}_url": settings.PORTAL_URL
        + reverse(
            "email_decision",
            args=[
                action_request.organization.slug,
                action_request.uuid,
                token(action_request, admin, decision, request_digest=request_digest),
            ],
        )
        for decision in (APPROVE, REJECT)
    }
