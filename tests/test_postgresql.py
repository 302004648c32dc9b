"""CI runs on PostgreSQL; these checks make sure it really does."""

import pytest
from django.db import connection

from actions.models import ResponseAction

pytestmark = pytest.mark.postgresql


def test_the_suite_runs_on_postgresql_with_migrations_applied(requires_postgresql):
    assert connection.vendor == "postgresql"
    assert connection.pg_version >= 150000
    assert ResponseAction.objects.count() == 20
