"""`{% link 'name' arg… %}`: `{% url %}` for the URLs every page shows (the navigation bar's),
reversed once per name and arguments rather than on every page."""

from functools import lru_cache

from django import template
from django.urls import get_script_prefix, get_urlconf, reverse

register = template.Library()


@lru_cache(maxsize=4096)
def _reversed(urlconf, prefix: str, name: str, args: tuple) -> str:
    return reverse(name, urlconf=urlconf, args=args)


def cached_reverse(name: str, *args) -> str:
    """`reverse(name, args=args)`, the same for the same URL configuration and script prefix."""
    return _reversed(get_urlconf(), get_script_prefix(), name, args)


@register.simple_tag(name="link")
def link(name: str, *args) -> str:
    return cached_reverse(name, *args)
