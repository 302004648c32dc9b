"""The processes the benchmark starts: each in a session of its own, stopped in `finally`.

A child's own children (a Celery worker's pool, gunicorn's workers) share its process group,
so stopping the group by the child's id stops them too, and nothing else.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANAGE = ROOT / "manage.py"


def benchmark(*args: str) -> list[str]:
    """The command line of `python -m benchmarks ARGS` in this virtual environment."""
    return [sys.executable, "-m", "benchmarks", *args]


def manage(*args: str) -> list[str]:
    """The command line of `python manage.py ARGS` in this virtual environment."""
    return [sys.executable, str(MANAGE), *args]


class Child:
    """One process started by the benchmark, its output in a log file (or a pipe)."""

    def __init__(self, name: str, argv: list[str], *, pipes: bool = False):
        self.name = name
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop())
            prefix=f"bench-{name}-", suffix=".log", delete=False
        )
        self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            argv,
            cwd=ROOT,
            env=os.environ.copy(),
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipes else self.log,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float = 10) -> None:
        """SIGTERM to the group, SIGKILL to whatever is left of it after `grace` seconds."""
        try:
            if self.running():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=grace)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        finally:
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            self.log.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.log.name)

    def failure(self, what: str) -> RuntimeError:
        tail = self.output()[-4000:]
        return RuntimeError(f"{what} ({self.name}, exit status {self.process.poll()}):\n{tail}")


def start(stack: contextlib.ExitStack, name: str, argv: list[str], **kwargs) -> Child:
    """Start a child whose stop is registered on `stack`, so it runs whatever happens."""
    child = Child(name, argv, **kwargs)
    stack.callback(child.stop)
    return child


def wait_until(condition: Callable[[], bool], timeout: float, what: str, *watched: Child) -> None:
    """Poll `condition` until it holds; fail if it does not within `timeout` or a child exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        for child in watched:
            if not child.running():
                raise child.failure(f"exited while waiting for {what}")
        time.sleep(0.05)
    logs = "\n".join(child.output()[-3000:] for child in watched)
    raise RuntimeError(f"Timed out after {timeout:g} s waiting for {what}.\n{logs}")


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def celery_worker(stack: contextlib.ExitStack, *, concurrency: int) -> Child:
    """`celery worker` on this run's queue (CELERY_TASK_DEFAULT_QUEUE), ready when it returns."""
    worker = start(
        stack,
        "celery-worker",
        [
            *(sys.executable, "-m", "celery", "-A", "responseportal", "worker"),
            *("--pool=prefork", f"--concurrency={concurrency}", "--loglevel=INFO"),
            *("--hostname=bench@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"),
        ],
    )
    wait_until(lambda: " ready." in worker.output(), 60, "the Celery worker to start", worker)
    return worker


def gunicorn(stack: contextlib.ExitStack, *, port: int, workers: int) -> Child:
    """gunicorn serving the portal on 127.0.0.1:`port`, ready when it returns."""
    server = start(
        stack,
        "gunicorn",
        [
            *(sys.executable, "-m", "gunicorn", "--workers", str(workers)),
            *("--bind", f"127.0.0.1:{port}", "--log-level", "warning"),
            "benchmarks.wsgi:application",
        ],
    )
    wait_until(lambda: listening(port), 60, f"gunicorn to listen on port {port}", server)
    return server
