"""`make bench` (`python -m benchmarks`): the portal's figures at scale, beside the Django
admin's, in bench-results.json.

On the PostgreSQL server of DATABASE_URL (default postgres://postgres@127.0.0.1:5432/) it
creates the database `responseportal_bench`, runs the benchmark in a child process connected
to it from the start, prints the table, writes `bench-results.json` in the project folder and
drops the database (unless --keep). The execution figures use Redis at BENCH_REDIS_URL
(default redis://127.0.0.1:6379/14), on a queue of this run's own, deleted at the end.
"""

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit

import dj_database_url
import psycopg2
import redis
from django.conf import settings
from django.test.utils import override_settings

from benchmarks import data, figures, processes, report, static_settings

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
DATABASE = "responseportal_bench"
RESULTS = "bench-results.json"
# How long the benchmark may take to stop its own processes after being told to stop.
STOP_GRACE = 60


class BenchmarkError(Exception):
    """Why the benchmark cannot run, or did not measure everything: `__main__` prints it."""


def run(*, quick: bool = False, keep: bool = False) -> None:
    """Create the database, run the benchmark in a child process, print and write the figures."""
    # Told to stop, unwind: every `finally` stops the processes this one started, and
    # the database is dropped.
    signal.signal(signal.SIGTERM, _exit)
    started, load = time.monotonic(), os.getloadavg()[0]
    server = _server(os.environ.get("DATABASE_URL") or DEFAULT_SERVER)
    redis_url = os.environ.get("BENCH_REDIS_URL") or DEFAULT_REDIS
    queue = f"response-portal-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with contextlib.closing(_connect(server)) as maintenance:
        _check_redis(redis_url)
        with maintenance.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
        _drop(maintenance)
        with maintenance.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
        try:
            found = _inner(_database_url(server), redis_url, queue, quick)
        finally:
            _forget_queue(redis_url, queue)
            if keep:
                print(f"Kept the database: {_database_url(server)}")
            else:
                _drop(maintenance)

    results = {
        "mode": "quick" if quick else "full",
        "duration_s": round(time.monotonic() - started, 1),
        "machine": report.machine(version, load),
        **found,
    }
    results["targets"] = report.checks(results)
    machine = results["machine"]
    print(
        f"\nResponse Portal benchmark ({results['mode']}, {results['duration_s']:g} s) on "
        f"{machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"PostgreSQL {machine['postgresql']}:\n"
    )
    print(report.table(report.HEADERS, report.rows(results)))
    if load > machine["cores"] / 2:
        print(
            f"\nThe machine was busy when the benchmark started (load average {load:.1f} "
            f"on {machine['cores']} cores): its figures may be lower than on a quiet machine."
        )
    path = Path(settings.BASE_DIR) / RESULTS
    report.write_json(path, results)
    print(f"\nWrote {path}.")
    failed = [name for name in report.FIGURES if "error" in results.get(name, {"error": 1})]
    if failed:
        raise BenchmarkError(f"Not measured, see the errors above: {', '.join(failed)}.")


def run_role(role: str, spec: dict) -> None:
    """One of the benchmark's own processes: the run itself, the export probe or a writer."""
    signal.signal(signal.SIGTERM, _exit)
    if role == "inner":
        figures.run(data.QUICK if spec["quick"] else data.FULL, Path(spec["results"]))
        return
    with override_settings(**static_settings(settings.STORAGES)):
        probe = {
            "export": figures.export_probe,
            "writer": figures.append_writer,
            "submitter": figures.submitter,
        }[role]
        found = probe(spec)
    print(json.dumps(found), flush=True)


def _inner(database_url: str, redis_url: str, queue: str, quick: bool) -> dict:
    """The benchmark in a child process whose settings point at the new database."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "insecure-key-for-the-benchmark",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        # Pages are requested as HTTPS from a TLS-terminating proxy, as in production.
        "BEHIND_TLS_PROXY": "true",
        "CELERY_BROKER_URL": redis_url,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "RESPONSE_EXECUTOR": "simulated",
        "SIMULATED_EXECUTOR_DELAY": "0",
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        # There is no collectstatic folder (see STATIC_WITHOUT_MANIFEST), as in the tests.
        "PYTHONWARNINGS": "ignore:No directory at:UserWarning",
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        results = Path(folder) / "results.json"
        spec = json.dumps({"quick": quick, "results": str(results)})
        inner = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            processes.benchmark("--role", "inner", "--spec", spec),
            cwd=processes.ROOT,
            env=env,
            start_new_session=True,
        )
        try:
            status = inner.wait()
        finally:
            _stop(inner)
        if status != 0 or not results.exists():
            raise BenchmarkError(
                f"The benchmark failed (exit status {status}); its output is above."
            )
        return json.loads(results.read_text())


def _exit(signum, frame):
    raise SystemExit(128 + signum)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the benchmark's process group; SIGKILL if it has not stopped in time."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _server(url: str) -> dict:
    found = dj_database_url.parse(url)
    if "postgresql" not in found["ENGINE"]:
        raise BenchmarkError(
            f"The benchmark runs on PostgreSQL, and DATABASE_URL={url} is not a postgres:// "
            f"URL. Set it to a server where you may create databases, e.g. {DEFAULT_SERVER}"
        )
    return found


def _database_url(server: dict) -> str:
    credentials = quote(server["USER"] or "", safe="")
    if server["PASSWORD"]:
        credentials += ":" + quote(server["PASSWORD"], safe="")
    host = server["HOST"] or "127.0.0.1"
    return f"postgres://{credentials}@{host}:{server['PORT'] or 5432}/{DATABASE}"


def _connect(server: dict):
    """A connection to the server's `postgres` database, to create and drop the benchmark's."""
    host, port = server["HOST"] or "127.0.0.1", server["PORT"] or 5432
    try:
        connection = psycopg2.connect(
            dbname="postgres",
            user=server["USER"] or None,
            password=server["PASSWORD"] or None,
            host=host,
            port=port,
            connect_timeout=5,
        )
    except psycopg2.Error as error:
        reason = " ".join(str(error).split())
        raise BenchmarkError(
            f"PostgreSQL at {host}:{port} does not answer ({reason}). Start it, "
            f"or set DATABASE_URL to a server where you may create databases, "
            f"e.g. {DEFAULT_SERVER}"
        ) from None
    connection.autocommit = True
    return connection


def _drop(connection) -> None:
    with connection.cursor() as cursor:
        # FORCE (PostgreSQL 13+) ends the connections of processes that outlived the run.
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def _check_redis(url: str) -> None:
    if urlsplit(url).path.strip("/") in {"", "0"}:
        raise BenchmarkError(
            f"BENCH_REDIS_URL={url} names Redis database 0, where applications keep their "
            f"data: give the benchmark a database of its own, e.g. {DEFAULT_REDIS}"
        )
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
    try:
        client.ping()
    except redis.exceptions.RedisError as error:
        raise BenchmarkError(
            f"Redis at {url} does not answer ({error}). The execution figures need it, with "
            "a real Celery worker: start redis-server, or set BENCH_REDIS_URL."
        ) from None
    finally:
        client.close()


def _forget_queue(url: str, queue: str) -> None:
    """Delete this run's queue (and what Celery keeps about it) from Redis."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
    with contextlib.suppress(redis.exceptions.RedisError):
        for key in client.scan_iter(match=f"*{queue}*"):
            client.delete(key)
    client.close()
