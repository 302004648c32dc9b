"""A running execution's heartbeat: proof, every few seconds, that its worker is alive.

While the executor works, a thread of the worker marks the request alive (every request of
its batch) every `EXECUTION_HEARTBEAT_INTERVAL` seconds; run in-process, without that thread,
each finished target marks it instead. When the worker dies, the marks stop, and
`dispatch_stranded` (beat, every minute) sends each request again once it has been silent for
`EXECUTION_HEARTBEAT_TIMEOUT` seconds. The executor's idempotency key keeps each target's effect
to one, even if the silent worker was only slow.
"""

import logging
import threading
from collections.abc import Callable

from django.db import connections

logger = logging.getLogger(__name__)


class Heartbeat:
    """`with Heartbeat(beat, interval):` calls `beat()` every `interval` seconds meanwhile.

    `beat` runs in a thread of its own, with database connections of its own, closed at the
    end. A beat that fails is logged and the next one is tried: a database that is briefly
    away must not stop the work the heartbeat vouches for.
    """

    def __init__(self, beat: Callable[[], object], interval: float):
        if not interval > 0:
            raise ValueError(f"A heartbeat interval of {interval!r} s: expected a positive number.")
        self.beat = beat
        self.interval = interval
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="execution-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.beat()
                    self.beats += 1
                except Exception:
                    logger.exception("A heartbeat failed; the next one is in %s s.", self.interval)
        finally:
            connections.close_all()  # this thread's connections only
