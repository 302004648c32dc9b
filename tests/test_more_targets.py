"""Lists show a request's first targets and say exactly how many more there are."""

import re

import pytest
from django.core import mail
from django.urls import reverse

from .approvals_helpers import submit
from .conftest import client_for

pytestmark = pytest.mark.django_db


def hosts(count: int) -> list[str]:
    return [f"h{n:02}.acme.test" for n in range(1, count + 1)]


def targets_cell(html: str) -> str:
    cells = re.findall(r'<td class="targets">(.*?)</td>', html, flags=re.S)
    assert len(cells) == 1, cells
    return cells[0]


@pytest.mark.parametrize("page", ["queue", "request_list"])
@pytest.mark.parametrize(
    "count,more",
    [(1, None), (3, None), (4, "and 1 more"), (5, "and 2 more"), (12, "and 9 more")],
)
def test_a_list_shows_the_first_three_targets_and_how_many_more(
    acme, operator, admin, page, count, more
):
    submit(acme, operator, endpoints=hosts(count))

    html = client_for(admin).get(reverse(page, args=["acme"])).content.decode()

    cell = targets_cell(html)
    assert re.findall(r"<code>(.*?)</code>", cell) == hosts(count)[:3]
    assert re.findall(r"and \d+ more", cell) == ([more] if more else [])


@pytest.mark.parametrize(
    "count,more", [(2, None), (20, None), (21, "… and 1 more"), (25, "… and 5 more")]
)
def test_an_email_lists_twenty_targets_and_how_many_more(
    acme, operator, admin, django_capture_on_commit_callbacks, count, more
):
    with django_capture_on_commit_callbacks(execute=True):
        submit(acme, operator, endpoints=hosts(count))

    (message,) = [m for m in mail.outbox if m.to == [admin.email]]
    listed = re.findall(r"^  - (\S+)$", message.body, flags=re.M)
    assert listed == hosts(count)[:20]
    assert re.findall(r"… and \d+ more", message.body) == ([more] if more else [])
