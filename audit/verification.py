"""Checking many chains with several processes, so that every core hashes events and
PostgreSQL reads them alongside.

Chains are cut into parts of consecutive sequences. A part is walked by a worker process from
where a walk over the whole chain would stand after the parts before it (`_Walk.start_after`):
just after the last event before the part. Should every part before it be intact, that is
exactly where the sequential walk stands, so the parts, adopted in order, give the report
`verify_chain` gives: the same first break, after the same number of events; the head and
whatever lies beyond it are then checked as `verify_chain` checks them, events appended meanwhile
included.
"""

import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.util import Finalize

from django.db import connection, connections

from .chain import ChainReport, _Walk, verify_chain
from .models import AuditChainHead

# The smallest part handed to another process: it should cost far more to check than to hand.
MIN_PART_EVENTS = 10_000


def default_jobs() -> int:
    """One process per core, at most four: each holds a database connection."""
    return max(1, min(4, os.cpu_count() or 1))


def _check_part(task: tuple[str, int, int, int]) -> tuple:
    chain, after, up_to, chunk_size = task
    walk = _Walk(chain)
    walk.start_after(after)
    walk.through(up_to, chunk_size)
    return walk.state()


def _close_connections_on_exit() -> None:
    Finalize(None, connections.close_all, exitpriority=10)


def verify_chains(
    to_check: list[str], *, chunk_size: int = 5000, jobs: int = 1, part_events: int | None = None
) -> Iterator[ChainReport]:
    """`verify_chain` of each chain, in order. With `jobs` > 1, on PostgreSQL, outside a
    transaction (other connections would not see its rows) and in a process that runs no other
    thread, `jobs` processes check the events, in parts of at least `part_events`.

    The processes are forked: a fork copies the database connections other threads hold, and
    the copies, closed when the child frees them, would end those threads' sessions. So a
    process with other threads (a server's, a test's live server) checks alone.
    """
    if (
        jobs <= 1
        or connection.vendor != "postgresql"
        or connection.in_atomic_block
        or threading.active_count() > 1
    ):
        for chain in to_check:
            yield verify_chain(chain, chunk_size=chunk_size)
        return
    heads = AuditChainHead.objects.in_bulk(to_check)
    total = sum(head.last_sequence for head in heads.values())
    size = max(part_events or MIN_PART_EVENTS, total // (jobs * 4))
    bounds = {
        chain: [
            (after, min(after + size, head.last_sequence))
            for after in range(0, head.last_sequence, size)
        ]
        for chain, head in heads.items()
    }
    tasks = [
        (chain, after, up_to, chunk_size)
        for chain in to_check
        for after, up_to in bounds.get(chain, [])
    ]
    # The workers are forked: none may share this process's connection.
    connections.close_all()
    with ProcessPoolExecutor(
        jobs,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_close_connections_on_exit,
    ) as executor:
        try:
            parts = iter([executor.submit(_check_part, task) for task in tasks])
            for chain in to_check:
                head = heads.get(chain)
                if head is None:
                    yield verify_chain(chain, chunk_size=chunk_size)
                    continue
                walked = [next(parts).result() for _ in bounds[chain]]
                yield verify_chain(chain, chunk_size=chunk_size, head=head, parts=walked)
        finally:
            # Stopped early (at a break): the parts not yet begun are of no use.
            executor.shutdown(cancel_futures=True)
