from django import template

from ..describe import Line, in_words

register = template.Library()


@register.simple_tag(name="in_words")
def in_words_tag(events) -> list[Line]:
    """`{% in_words events as lines %}`: each event with its sentence (`line.sentence`)."""
    return in_words(events)
