"""The benchmark's arithmetic and reporting on small inputs; `make bench` itself is not run here."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from benchmarks import anatomy, figures, report


def page(median, p95=None):
    return {"median": median, "p95": p95 if p95 is not None else median, "samples": 50}


def results(**changes) -> dict:
    """A full set of figures, every target met, with `changes` applied."""
    found = {
        "audit_first_page_ms": page(8.0),
        "audit_deep_page_ms": page(9.0),
        "admin_audit_first_page_ms": page(300.0),
        "admin_audit_deep_page_ms": page(1800.0),
        "queue_page_ms": page(20.0),
        "admin_queue_page_ms": page(60.0),
        "request_detail_ms": page(25.0),
        "queries_per_page": {
            "pages": {"audit_first_page": {"at_10": 6, "at_scale": 6}},
        },
        "page_sql_ratio": {
            "pages": {
                "queue_page": {"value": 2.5, "page_ms": 20.0, "sql_ms": 8.0, "statements": 9},
                "request_detail": {"value": 3.0, "page_ms": 24.0, "sql_ms": 8.0},
            }
        },
        "e2e_sql_per_request": {"value": 61.9, "web": 31.0, "worker": 30.9},
        "e2e_transactions_per_request": {"value": 9.2, "web": 4.0, "worker": 5.2},
        "e2e_tasks_per_request": {"value": 1.15, "from_web": 1.0, "from_worker": 0.15},
        "e2e_cpu_ms_per_request": {"value": 103.27, "web": 50.95, "worker": 52.32},
        "export_100k_rows_s": {"value": 2.5, "rows": 100_000},
        "export_peak_rss_mb": {"value": 4.2},
        "audit_appends_per_s": {"value": 2500, "chains_intact": True},
        "verify_events_per_s": {"value": 180_000},
        "e2e_requests_per_s": {"value": 120.0, "requests": 2000, "successful": 2000},
        "api_requests_per_s": {"value": 310.0, "requests": 2000},
        "api_e2e_requests_per_s": {"value": 110.0, "requests": 2000, "successful": 2000},
        "http_queue_rps": {"value": 90.0, "median_ms": 40.0, "p95_ms": 70.0},
        "notification_emails_per_1000_auto_approvals": {"value": 5.0, "requests": 1000},
    }
    found.update(changes)
    return found


User = get_user_model()


def row(name, figures):
    return next(r for r in report.rows(figures) if r[0] == name)


def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two():
    assert report.median([4, 1, 3, 2]) == 2.5
    assert report.median([7]) == 7


def test_p95_is_the_nearest_rank():
    assert report.p95(list(range(1, 101))) == 95
    assert report.p95(list(range(50, 0, -1))) == 48  # the 48th of 50, whatever the order
    assert report.p95([3.5]) == 3.5


def test_no_samples_is_an_error_not_a_zero():
    with pytest.raises(ValueError):
        report.median([])
    with pytest.raises(ValueError):
        report.p95([])


def test_timings_give_median_p95_and_how_many_samples():
    assert report.timings([10.0, 30.0, 20.0], url="/q/") == {
        "median": 20.0,
        "p95": 30.0,
        "samples": 3,
        "url": "/q/",
    }


def test_the_table_pads_columns_and_right_aligns_figures():
    text = report.table(
        ("figure", "median", "p95"), [["a", "5.0 ms", "9.0 ms"], ["bb", "10.0 ms", ""]]
    )
    assert text.splitlines() == [
        "figure  median   p95",
        "------  -------  ------",
        "a        5.0 ms  9.0 ms",
        "bb      10.0 ms",
    ]


def test_a_run_that_meets_every_target_says_yes_to_each():
    rows = report.rows(results())
    assert row("audit_first_page_ms", results())[1:] == [
        "8.0 ms",
        "8.0 ms",
        "< 50 ms median",
        "yes",
    ]
    assert "200.0x" in row("audit_deep_page_ms", results())[3]
    assert row("admin_audit_deep_page_ms", results())[3:] == ["for comparison", ""]
    assert row("queries_per_page audit_first_page", results())[1] == "6 at 10, 6 at scale"
    assert row("e2e_requests_per_s", results())[1] == "120/s"
    assert row("api_requests_per_s", results())[1:] == ["310/s", "", "-", ""]
    assert row("api_e2e_requests_per_s", results())[3:] == [
        ">= 100/s, every request successful",
        "yes",
    ]
    assert row("http_queue_rps", results())[1:3] == ["90 req/s", "70.0 ms"]
    assert row("notification_emails_per_1000_auto_approvals", results())[1:] == [
        "5 e-mails",
        "",
        "<= 20 with the default interval",
        "yes",
    ]
    assert all(r[4] in {"yes", ""} for r in rows)


def test_missed_targets_say_no():
    missed = results(
        queue_page_ms=page(51.0),
        audit_deep_page_ms=page(9.0),
        admin_audit_deep_page_ms=page(80.0),  # under 10 times slower
        queries_per_page={"pages": {"queue_page": {"at_10": 8, "at_scale": 9}}},
        export_peak_rss_mb={"value": 50.0},
        audit_appends_per_s={"value": 5000, "chains_intact": False},
        e2e_requests_per_s={"value": 150.0, "requests": 2000, "successful": 1999},
        api_e2e_requests_per_s={"value": 150.0, "requests": 2000, "successful": 1999},
        notification_emails_per_1000_auto_approvals={"value": 20.5, "requests": 1000},
    )
    for name in (
        "notification_emails_per_1000_auto_approvals",
        "queue_page_ms",
        "audit_deep_page_ms",
        "queries_per_page queue_page",
        "export_peak_rss_mb",
        "audit_appends_per_s",
        "e2e_requests_per_s",
        "api_e2e_requests_per_s",
    ):
        assert row(name, missed)[4] == "NO", name


def test_the_issue_s_targets_are_the_ones_judged():
    # Issue 16: 2,000 appends and 150,000 verified events a second, 100 requests end to end
    # through the services and through the API, pages within 3 times their SQL.
    below = results(
        audit_appends_per_s={"value": 1999, "chains_intact": True},
        verify_events_per_s={"value": 149_999},
        api_e2e_requests_per_s={"value": 99.9, "requests": 2000, "successful": 2000},
        e2e_requests_per_s={
            "value": 120.0,
            "requests": 2000,
            "successful": 2000,
            "chain_intact": False,
        },
        page_sql_ratio={
            "pages": {
                "queue_page": {"value": 3.1, "page_ms": 31.0, "sql_ms": 10.0},
                "admin_queue_page": {"value": 1.0, "page_ms": 10.0, "sql_ms": 10.0},
            }
        },
    )
    for name in (
        "audit_appends_per_s",
        "verify_events_per_s",
        "api_e2e_requests_per_s",
        "e2e_requests_per_s",
        "page_sql_ratio queue_page",
    ):
        assert row(name, below)[4] == "NO", name
    assert row("page_sql_ratio admin_queue_page", below)[3:] == ["for comparison", ""]


def test_the_admin_s_pages_are_only_compared_with_their_sql():
    slow_admin = results(
        page_sql_ratio={
            "pages": {
                "queue_page": {"value": 2.0, "page_ms": 20.0, "sql_ms": 10.0},
                "admin_queue_page": {"value": 6.3, "page_ms": 63.0, "sql_ms": 10.0},
            }
        }
    )
    assert row("page_sql_ratio admin_queue_page", slow_admin)[3:] == ["for comparison", ""]
    assert report.checks(slow_admin)["page_sql_ratio"]["met"] is True


def test_a_figure_that_could_not_be_measured_shows_the_error_and_fails_its_target():
    broken = results(verify_events_per_s={"error": "RuntimeError: chain broken"})
    assert row("verify_events_per_s", broken)[1] == "error"
    assert row("verify_events_per_s", broken)[4] == "NO"
    assert report.checks(broken)["verify_events_per_s"]["met"] is False


def test_the_json_file_holds_the_figures_and_nothing_is_left_behind(tmp_path):
    path = tmp_path / "bench-results.json"
    figures = {**results(), "targets": report.checks(results())}

    report.write_json(path, figures)
    report.write_json(path, figures)  # replaced whole

    assert json.loads(path.read_text()) == figures
    assert [p.name for p in tmp_path.iterdir()] == ["bench-results.json"]


def bench(database_url: str) -> subprocess.CompletedProcess:
    """`python -m benchmarks --quick`, as `make bench` runs it, against `database_url`."""
    return subprocess.run(  # noqa: S603 (our own interpreter and arguments)
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "bench-test"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_refuses_a_database_that_is_not_postgresql():
    run = bench("sqlite:///bench.sqlite3")
    assert run.returncode == 1
    assert "The benchmark runs on PostgreSQL" in run.stderr
    assert "DATABASE_URL=sqlite:///bench.sqlite3 is not a postgres:// URL" in run.stderr
    assert "Traceback" not in run.stderr


def test_it_names_the_postgresql_server_that_does_not_answer():
    run = bench("postgres://postgres@127.0.0.1:1/")
    assert run.returncode == 1
    assert "PostgreSQL at 127.0.0.1:1 does not answer" in run.stderr
    assert "Traceback" not in run.stderr


def test_each_page_is_shown_beside_its_sql_and_over_three_times_it_fails():
    assert row("page_sql_ratio queue_page", results())[1:] == [
        "2.5x (20.0 / 8.0 ms)",
        "",
        "<= 3x its SQL",
        "yes",
    ]
    assert row("page_sql_ratio request_detail", results())[4] == "yes"  # 3 is within
    slow = results(
        page_sql_ratio={
            "pages": {
                "queue_page": {"value": 2.5, "page_ms": 20.0, "sql_ms": 8.0},
                "request_detail": {"value": 3.01, "page_ms": 30.1, "sql_ms": 10.0},
            }
        }
    )
    assert row("page_sql_ratio queue_page", slow)[4] == "yes"
    assert row("page_sql_ratio request_detail", slow)[4] == "NO"
    assert report.checks(slow)["page_sql_ratio"]["met"] is False
    assert report.checks(results())["page_sql_ratio"]["met"] is True


def test_the_per_request_figures_show_each_side():
    assert row("e2e_sql_per_request", results())[1] == "61.9 (web 31, worker 30.9)"
    assert row("e2e_cpu_ms_per_request", results())[1] == "103.27 ms (web 50.95, worker 52.32)"
    assert row("e2e_tasks_per_request", results())[1] == "1.15 (1 from web, 0.15 from worker)"
    assert row("e2e_transactions_per_request", results())[3:] == ["-", ""]
    broken = results(e2e_sql_per_request={"error": "RuntimeError: the sample failed"})
    assert row("e2e_sql_per_request", broken)[1::3] == ["error", "NO"]


def test_the_new_keys_are_in_the_table_and_the_json_checks():
    names = [r[0] for r in report.rows(results())]
    for name in (
        "e2e_sql_per_request",
        "e2e_transactions_per_request",
        "e2e_tasks_per_request",
        "e2e_cpu_ms_per_request",
    ):
        assert name in names
        assert name in report.checks(results())
        assert name in anatomy.KEYS


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            'SELECT "a"."id" FROM "approvals_actionrequest" WHERE "a"."id" = 1 LIMIT 21 FOR UPDATE',
            "SELECT approvals_actionrequest FOR UPDATE",
        ),
        (
            '  select "x" from "audit_auditevent" where "note" = \'FOR UPDATE\'',
            "SELECT audit_auditevent",  # the words in a string are no lock
        ),
        ('SELECT 1 FROM "t" FOR NO KEY UPDATE', "SELECT t FOR UPDATE"),
        (
            'INSERT INTO "approvals_requesttarget" ("a") VALUES (1), (2)',
            "INSERT INTO approvals_requesttarget",
        ),
        ('UPDATE "audit_auditchainhead" SET "last_sequence" = 3', "UPDATE audit_auditchainhead"),
        ('SAVEPOINT "s140_x1"', "SAVEPOINT"),
        ('RELEASE SAVEPOINT "s140_x1"', "RELEASE SAVEPOINT"),
        ("SELECT 1", "SELECT"),
        # The audit chain's own SQL: unquoted names, and a subquery that reads another table.
        (
            "SELECT head.last_sequence, (SELECT beyond.id FROM approvals_auditevent beyond "
            "WHERE beyond.chain = head.chain LIMIT 1) FROM approvals_auditchainhead head "
            "WHERE head.chain = %s FOR UPDATE OF head",
            "SELECT approvals_auditchainhead FOR UPDATE",
        ),
        (
            'INSERT INTO approvals_auditevent ("chain", "data") VALUES (%s, %s) RETURNING id',
            "INSERT INTO approvals_auditevent",
        ),
    ],
)
def test_a_statement_s_kind_is_its_verb_its_first_table_and_its_lock(sql, expected):
    assert anatomy.kind(sql) == expected


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)  # the transactions counted are real ones
def test_the_tally_counts_each_transaction_once_and_every_statement(requires_postgresql):
    with anatomy.Tally().installed() as tally:
        User.objects.count()  # autocommit: a transaction each
        User.objects.exists()
        with transaction.atomic():  # BEGIN before the first statement, COMMIT at the end
            User.objects.count()
            with transaction.atomic():  # a savepoint inside the same transaction
                User.objects.exists()
            User.objects.count()
        with transaction.atomic():
            pass  # no statement: psycopg2 sends no BEGIN, PostgreSQL sees no transaction
        with transaction.atomic():
            User.objects.exists()
    assert tally.transactions == 4
    # 2 + (3 + SAVEPOINT + RELEASE) + 1
    assert tally.statements == 8
    assert tally.kinds["SAVEPOINT"] == 1
    assert tally.kinds["RELEASE SAVEPOINT"] == 1
    assert tally.kinds["SELECT auth_user"] == 6
    User.objects.count()  # no longer installed
    assert tally.statements == 8


@pytest.mark.postgresql
def test_the_replay_runs_a_page_s_statements_and_undoes_their_writes(requires_postgresql):
    User.objects.create(username="kept")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM auth_user")
        before = cursor.fetchone()[0]
    inserted = (
        "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, "
        "email, is_staff, is_active, date_joined) VALUES ('', false, 'replayed', '', '', '', "
        "false, true, now())"
    )
    seconds = anatomy._replay([inserted, "SELECT count(*) FROM auth_user"])
    assert seconds > 0
    assert User.objects.count() == before
    assert not User.objects.filter(username="replayed").exists()


def test_a_profiled_page_s_time_is_shared_between_sql_templates_and_the_view(db):
    found = anatomy.breakdown(Client(), reverse("login"), figures.fetch)
    assert set(found) == {
        "sql_share",
        "templates_share",
        "view_share",
        "middleware_and_client_share",
    }
    assert all(0 <= share <= 1 for share in found.values()), found
    assert found["templates_share"] > 0  # the sign-in page is a template
    assert found["templates_share"] <= found["view_share"]  # rendered within the view
    assert found["view_share"] + found["middleware_and_client_share"] == pytest.approx(1, abs=0.002)
