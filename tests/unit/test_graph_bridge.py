"""The async bridge: one event loop per process in a daemon thread, bounded waits."""
from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.adapters.graph import _LOOP
from app.domain.evidence import GraphUnavailable
from tests.support import run_in_forked_child


async def loop_identity(delay: float = 0.0) -> tuple[int, int]:
    await asyncio.sleep(delay)
    return id(asyncio.get_running_loop()), threading.get_ident()


def test_calls_from_many_threads_share_one_loop_and_run_concurrently():
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: _LOOP.run(loop_identity(0.2), 5), range(8)))
    assert len(set(answers)) == 1  # one loop, one thread
    assert answers[0][1] != threading.get_ident()
    assert time.monotonic() - started < 1.0  # eight 0.2 s waits overlapped


def test_a_call_that_outlives_its_bound_is_cancelled():
    cancelled = threading.Event()

    async def hang():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    started = time.monotonic()
    with pytest.raises(GraphUnavailable):
        _LOOP.run(hang(), 0.2)
    assert time.monotonic() - started < 1.0
    assert cancelled.wait(2), "the abandoned coroutine kept running"


def test_a_forked_child_gets_its_own_loop():
    parent = _LOOP.run(loop_identity(), 5)

    def in_child():
        _LOOP.run(loop_identity(), 5)  # would hang on the parent's loop, whose thread the child does not have
        return [os.getpid(), _LOOP._pid]

    child_pid, loop_pid = run_in_forked_child(in_child, timeout=10)
    assert child_pid != os.getpid() and loop_pid == child_pid
    assert _LOOP.run(loop_identity(), 5) == parent  # the parent's loop is untouched
