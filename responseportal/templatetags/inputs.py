"""`{{ form.field|input }}`: a filter form's input, rendered once while it shows no value.

Django renders a select option by option through its widget templates: the audit log's and
the queue's filter forms, with their lists of verbs and actions, cost a fifth of those pages.
Blank, an input is the same on every request for the same form class, field and choices, so
it is kept, keyed by these; an input with a value or an error is rendered each time. For forms
whose widgets' attributes are set by the class, never per request.
"""

from django import template
from django.forms import BoundField
from django.utils.safestring import SafeString

register = template.Library()

_BLANK: dict[tuple, SafeString] = {}
KEPT = 200  # blank inputs: a few per form class, more only if the choices change often


@register.filter(name="input")
def input_html(field: BoundField) -> SafeString:
    form = field.form
    data = field.data if form.is_bound else None
    if data not in (None, "") or field.initial not in (None, "") or field.errors:
        return str(field)
    choices = getattr(field.field, "choices", None)
    key = (
        type(form),
        form.prefix,
        form.auto_id,
        field.name,
        form.is_bound,
        data,
        tuple(choices) if choices is not None else None,
    )
    html = _BLANK.get(key)
    if html is None:
        if len(_BLANK) >= KEPT:
            _BLANK.clear()
        html = _BLANK[key] = str(field)
    return html
