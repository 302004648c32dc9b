"""Make the ResponseAction rows match the catalog defined in `actions.catalog`."""

from dataclasses import dataclass, field

from django.db import transaction

from .catalog import ACTIONS
from .models import ResponseAction


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deactivated)


def sync_catalog(model=None) -> SyncResult:
    """Create, update or deactivate rows so the table matches the code; idempotent.

    `model` is the historical model when called from a data migration.
    """
    if model is None:
        model = ResponseAction
    known = {f.name for f in model._meta.get_fields()}
    result = SyncResult()
    with transaction.atomic():
        rows = {row.key: row for row in model.objects.select_for_update()}
        for position, action in enumerate(ACTIONS):
            wanted = {
                "name": action.name,
                "description": action.description,
                "category": action.category,
                "needs_auto_approval": action.needs_auto_approval,
                "parameters": action.parameters_as_json(),
                "position": position,
                "active": True,
            }
            wanted = {name: value for name, value in wanted.items() if name in known}
            row = rows.pop(action.key, None)
            if row is None:
                model.objects.create(key=action.key, **wanted)
                result.created.append(action.key)
                continue
            changed = [name for name, value in wanted.items() if getattr(row, name) != value]
            if changed:
                for name in changed:
                    setattr(row, name, wanted[name])
                row.save(update_fields=changed)
                result.updated.append(action.key)
        for row in rows.values():
            if getattr(row, "active", False):
                row.active = False
                row.save(update_fields=["active"])
                result.deactivated.append(row.key)
    return result
