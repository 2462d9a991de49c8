"""A worker process for the lease race test: runs cycles and confirm passes under the shared lease, recording each.

Usage: python -m tests.services.race_worker DATABASE_URL HOLDER SECONDS
Each cycle or pass writes an audit event "race.cycle" with its holder, kind, start and end (epoch seconds).
"""
from __future__ import annotations

import sys
import threading
import time

from app.adapters.lease import Lease
from app.adapters.store import Store
from app.domain.actors import Actor, ActorKind
from app.worker import run_worker


class RecordingSweeper:
    """Stands in for the Sweeper: a cycle that takes a little while and leaves a trace."""

    def __init__(self, store: Store, holder: str):
        self.store, self.holder = store, holder

    def run_cycle(self):
        return self._record("full")

    def run_confirm_pass(self):
        return self._record("confirm")

    def _record(self, kind: str):
        start = time.time()
        time.sleep(0.15)
        self.store.audit(Actor(ActorKind.WORKER, self.holder), "race.cycle", kind=kind, start=start, end=time.time())
        return None


def main() -> None:
    url, holder, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    store = Store(url)
    store.upgrade()
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    print("ready", flush=True)
    run_worker(RecordingSweeper(store, holder), Lease(store, holder=holder, ttl_seconds=1.0), interval=0.5,
               confirm_interval=0.1, stop_event=stop)


if __name__ == "__main__":
    main()
