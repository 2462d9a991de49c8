"""Background jobs: work the page queues in the database and the worker does a chunk at a time under its lease.

A batch's check (app/services/batches.py) and a desk scan (app/services/scan.py) work alike: the rows to do are
stored when the desk asks, each worker tick takes the next CHUNK of rows not yet done, and writes their results
with the job's progress in one transaction. The worker's lease lets one worker at a time run them; a worker that
dies mid-chunk has written nothing of it, and the next tick (on any worker) does that chunk again.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

# Rows one worker tick does at most per job: about 12 s of Graph on the simulator, so the grants' work (expiry)
# and the worker's lease never wait behind a large job; each chunk reads the tenant's sign-ins once (2 pages).
CHUNK = 500
PROGRESS_EVERY_SECONDS = 1.0  # how often a running chunk writes its progress (the page polls it)

Step = TypeVar("Step")


def throttled(write: Callable[[Step], None], *, every: float = PROGRESS_EVERY_SECONDS,
              last_step: Callable[[Step], bool] = lambda step: getattr(step, "phase", "") == "done"
              ) -> Callable[[Step], None]:
    """Return a progress callback that writes at most once per `every` seconds, and always the last step."""
    last = [0.0]

    def progress(step: Step) -> None:
        now = time.monotonic()
        if now - last[0] >= every or last_step(step):
            last[0] = now
            write(step)

    return progress
