"""The portal's own REST API, `/api/v1/`: thin views over the services the pages call."""

from itertools import groupby

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from actions.models import CATEGORY_ORDER, ResponseAction
from approvals.decision import decide
from approvals.models import ApprovalSettings

from .access import membership_for

PROBLEM = inline_serializer(
    "Problem",
    {
        "type": serializers.CharField(),
        "title": serializers.CharField(),
        "status": serializers.IntegerField(),
        "detail": serializers.CharField(),
        "errors": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()), required=False
        ),
    },
)
ERRORS = {code: PROBLEM for code in (401, 403, 404, 429)}

ACTION_FIELDS = {
    "key": serializers.CharField(),
    "name": serializers.CharField(),
    "category": serializers.CharField(),
    "description": serializers.CharField(),
    "needs_auto_approval": serializers.BooleanField(),
    "parameters": serializers.ListField(
        child=inline_serializer(
            "ActionParameter",
            {
                "name": serializers.CharField(),
                "label": serializers.CharField(),
                "help": serializers.CharField(),
                "required": serializers.BooleanField(),
            },
        )
    ),
    "approval": serializers.ChoiceField(
        choices=["not_required", "auto", "manual", "refused"],
        help_text="How the organization's settings treat a request for it now "
        "(for endpoints in scope).",
    ),
    "refusal": serializers.CharField(help_text="Why it is refused now, or empty."),
}


@extend_schema(
    summary="The catalog, as this organization's settings treat it now",
    responses={
        200: inline_serializer(
            "Catalog", {"actions": inline_serializer("Action", ACTION_FIELDS, many=True)}
        ),
        **ERRORS,
    },
)
@api_view(["GET"])
def catalog(request: Request, slug: str) -> Response:
    membership = membership_for(request, slug)
    settings = ApprovalSettings.for_organization(membership.organization)
    actions = sorted(
        ResponseAction.objects.filter(active=True),
        key=lambda action: (CATEGORY_ORDER[action.category], action.position),
    )
    listed = []
    for _, members in groupby(actions, key=lambda action: action.category):
        for action in members:
            decision = decide(action, settings, [])
            listed.append(
                {
                    "key": action.key,
                    "name": action.name,
                    "category": action.category,
                    "description": action.description,
                    "needs_auto_approval": action.needs_auto_approval,
                    "parameters": [
                        {
                            "name": p["name"],
                            "label": p["label"],
                            "help": p["help"],
                            "required": p.get("required", True),
                        }
                        for p in action.parameters
                    ],
                    "approval": "refused" if decision.refused else str(decision.mode),
                    "refusal": decision.refusal,
                }
            )
    return Response({"actions": listed})
