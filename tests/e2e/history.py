"""A morning of work at `acme`, made through the service layer, for pages worth looking at."""

from dataclasses import dataclass

from django.contrib.auth.models import User

from approvals import services
from approvals.models import ActionRequest, ApprovalSettings, ScriptLanguage
from audit.context import AuditContext
from audit.models import AuditEvent, Source
from responseportal.models import Organization

from ..approvals_helpers import submit

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"
# As if each of them had done it in the portal, from their own desk.
OPERATORS_DESK = AuditContext(Source.WEB, "192.0.2.10", BROWSER)
ADMINS_DESK = AuditContext(Source.WEB, "192.0.2.20", BROWSER)


@dataclass
class History:
    organization: Organization
    pending: list[ActionRequest]
    finished: ActionRequest
    rejected: ActionRequest
    settings_changed: AuditEvent


def acme_history() -> History:
    """Finished, rejected and pending requests, a settings change and a script, at `acme`.

    The settings change is the journey's: automatic approval on, except for Isolate Endpoint.
    """
    acme = Organization.objects.get(slug="acme")
    operator = User.objects.get(username="operator")
    admin = User.objects.get(username="acme-admin")

    finished = submit(
        acme, operator, endpoints=["web-01.acme.test", "web-02.acme.test"], context=OPERATORS_DESK
    )
    services.approve_request(
        finished.pk, actor=admin, comment="Confirmed with the SOC", context=ADMINS_DESK
    )
    rejected = submit(acme, operator, endpoints=["lab-17.acme.test"], context=OPERATORS_DESK)
    services.reject_request(
        rejected.pk, actor=admin, reason="A lab machine: nothing to isolate", context=ADMINS_DESK
    )

    settings = ApprovalSettings.for_organization(acme)
    services.update_approval_settings(
        acme,
        actor=admin,
        values={
            "auto_approval_enabled": True,
            "auto_approved_actions": [
                key for key in settings.auto_approved_actions if key != "isolate_endpoint"
            ],
            "notify_emails": ["soc@acme.test"],
        },
        version=settings.version,
        context=ADMINS_DESK,
    )
    settings_changed = AuditEvent.objects.filter(verb="settings.changed").latest("sequence")

    services.upload_script(
        acme,
        actor=operator,
        name="collect-netstat.sh",
        language=ScriptLanguage.BASH,
        content="#!/usr/bin/env bash\nset -eu\nss -tunap > /tmp/netstat.txt\n",
        context=OPERATORS_DESK,
    )

    pending = [
        submit(
            acme,
            operator,
            endpoints=["db-03.acme.test"],
            summary="Ransom note on db-03",
            context=OPERATORS_DESK,
        ),
        submit(
            acme,
            operator,
            endpoints=[f"pos-{n:02}.stores.acme.test" for n in range(1, 9)],
            summary="Card skimmer beaconing from the store tills",
            context=OPERATORS_DESK,
        ),
        submit(
            acme,
            operator,
            endpoints=["10.20.4.17", "10.20.4.18"],
            summary="Lateral movement over SMB",
            context=OPERATORS_DESK,
        ),
    ]
    return History(acme, pending, finished, rejected, settings_changed)
