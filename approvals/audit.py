"""Writing audit events. Every state change calls `record` inside its own transaction."""

from dataclasses import dataclass

from django.http import HttpRequest

from responseportal.models import Organization

from .models import ActionRequest, AuditEvent, Source


@dataclass(frozen=True)
class AuditContext:
    """Where an action came from: the web, an e-mail link, or the system itself."""

    source: str = Source.SYSTEM
    ip_address: str | None = None
    user_agent: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest, source: str = Source.WEB) -> "AuditContext":
        return cls(
            source=source,
            ip_address=request.META.get("REMOTE_ADDR") or None,
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:500],
        )


SYSTEM = AuditContext()


def record(
    organization: Organization,
    verb: str,
    *,
    actor=None,
    role: str = "",
    request: ActionRequest | None = None,
    data: dict | None = None,
    context: AuditContext = SYSTEM,
) -> AuditEvent:
    return AuditEvent.objects.create(
        organization=organization,
        actor=actor,
        actor_username=actor.get_username() if actor is not None else "",
        role=role,
        verb=verb,
        request=request,
        action_key=request.action.key if request is not None else "",
        data=data or {},
        source=context.source,
        ip_address=context.ip_address,
        user_agent=context.user_agent,
    )
