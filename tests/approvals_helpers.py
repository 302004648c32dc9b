"""Requests made through the service layer, for tests that start from an existing request."""

from actions.models import ResponseAction
from approvals import services
from approvals.models import ApprovalSettings


def submit(organization, actor, key="isolate_endpoint", endpoints=("web-01.acme.test",), **kw):
    parameters = kw.pop("parameters", {"endpoints": list(endpoints), "description": "Beaconing"})
    return services.submit_request(
        organization,
        ResponseAction.objects.get(key=key),
        actor=actor,
        parameters=parameters,
        targets=[services.Target("endpoint", endpoint) for endpoint in endpoints],
        endpoints=list(endpoints),
        summary=kw.pop("summary", "Beaconing " + " ".join(endpoints)),
        **kw,
    )


def turn_on_auto_approval(organization, **changes):
    settings = ApprovalSettings.for_organization(organization)
    settings.auto_approval_enabled = True
    for name, value in changes.items():
        setattr(settings, name, value)
    settings.save()
    return settings
