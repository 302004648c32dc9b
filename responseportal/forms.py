"""Widgets of the pages' filter bars, styled once for every app."""

from django import forms


def text_input(**attrs) -> forms.TextInput:
    return forms.TextInput(attrs={"class": "form-control", **attrs})


def search_input() -> forms.TextInput:
    return text_input(type="search")


def select() -> forms.Select:
    return forms.Select(attrs={"class": "form-select"})
