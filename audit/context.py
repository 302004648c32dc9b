"""Where an audited change came from: the web, an e-mail link, or the system itself."""

from dataclasses import dataclass

from django.http import HttpRequest

from responseportal.http import client_ip

from .models import Source


@dataclass(frozen=True)
class AuditContext:
    """Where an action came from: the web, an e-mail link, or the system itself."""

    source: str = Source.SYSTEM
    ip_address: str | None = None
    user_agent: str = ""
    # The name of the API token that made the change; `record` keeps it in the event's data.
    api_token: str = ""
    # The kind of second factor the actor proved just before the change (a step-up, see
    # accounts.stepup); `record` keeps it in the event's data.
    second_factor: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest, source: str = Source.WEB) -> "AuditContext":
        return cls(
            source=source,
            ip_address=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:500],
            second_factor=getattr(request, "second_factor", ""),
        )


SYSTEM = AuditContext()
