from django import template

from ..icons import STATUS_ICONS, TARGET_ICONS

register = template.Library()


@register.filter
def status_icon(status: str) -> str:
    return STATUS_ICONS.get(status, "➜")


@register.filter
def target_icon(status: str) -> str:
    return TARGET_ICONS.get(status, "◔")
