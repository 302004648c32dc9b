"""`python -m benchmarks [--quick] [--keep]`, which `make bench` runs (see `command`)."""

import argparse
import json
import os
import sys

import django


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Seed a database of its own with a million audit events and ten thousand pending "
            "requests, measure the portal's pages beside the Django admin's, the export, audit "
            "appends and verification, execution through Celery (of requests submitted through "
            "the services and through the API) and the queue under gunicorn; "
            "print the figures and write them to bench-results.json."
        ),
    )
    found.add_argument(
        "--quick",
        action="store_true",
        help="a tenth of the data and a 5 s load test: under 2 minutes, for CI",
    )
    found.add_argument(
        "--keep", action="store_true", help="keep the database responseportal_bench afterwards"
    )
    # The benchmark's own processes: the run itself, the export probe, the writers, the
    # submitters.
    found.add_argument(
        "--role", choices=["inner", "export", "writer", "submitter"], help=argparse.SUPPRESS
    )
    found.add_argument("--spec", default="{}", help=argparse.SUPPRESS)
    return found


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "responseportal.settings")
    django.setup()
    from benchmarks import command  # imports models: only once Django is set up

    try:
        if arguments.role is not None:
            command.run_role(arguments.role, json.loads(arguments.spec))
        else:
            command.run(quick=arguments.quick, keep=arguments.keep)
    except command.BenchmarkError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
