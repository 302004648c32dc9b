from django.db import models

from . import catalog


class Category(models.TextChoices):
    NOT_REQUIRED = catalog.NOT_REQUIRED, "Approval not required"
    CRITICAL = catalog.CRITICAL, "Critical"
    RECOMMENDED = catalog.RECOMMENDED, "Recommended"


CATEGORY_ORDER = {category: position for position, category in enumerate(Category)}


class ResponseAction(models.Model):
    """A response action of the catalog; rows mirror `actions.catalog` and are never hand-edited."""

    key = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField()
    category = models.CharField(max_length=20, choices=Category.choices)
    needs_auto_approval = models.BooleanField(default=False)
    parameters = models.JSONField(default=list)
    position = models.PositiveIntegerField(default=0)
    # False for an action that left the catalog: requests keep pointing at it.
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return self.name

    @property
    def auto_approval_note(self) -> str:
        return catalog.AUTO_APPROVAL_REQUIRED if self.needs_auto_approval else ""
