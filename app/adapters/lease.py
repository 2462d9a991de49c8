"""An expiring lease in the database, so that one worker runs at a time across processes and instances."""
from __future__ import annotations

import os
import secrets
import socket

from app.adapters.store import Store

WORKER_LEASE = "worker"


def default_holder() -> str:
    """Name this process uniquely: host, pid and a random tag (pids repeat across restarts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _dead_local_holder(holder: str) -> bool:
    """Tell whether a holder name belongs to a process on this host that no longer exists."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


class Lease:
    """Acquire, renew and release one named lease; it expires by itself if its holder dies."""

    def __init__(self, store: Store, name: str = WORKER_LEASE, holder: str | None = None,
                 ttl_seconds: float = 60.0):
        if ttl_seconds <= 0:
            raise ValueError("a lease needs a positive time-to-live")
        self.store = store
        self.name = name
        self.holder = holder or default_holder()
        self.ttl_seconds = ttl_seconds
        self.held = False

    def acquire(self) -> bool:
        """Take the lease (or renew it if ours); True if this process holds it now."""
        self.held = self.store.acquire_lease(self.name, self.holder, self.ttl_seconds)
        if not self.held:
            self.held = self._take_over_from_dead_local_holder()
        return self.held

    renew = acquire

    def release(self) -> None:
        """Give the lease back so another worker can start at once."""
        if self.held:
            self.store.release_lease(self.name, self.holder)
        self.held = False

    def _take_over_from_dead_local_holder(self) -> bool:
        # A worker restarted on the same host need not wait out the lease of its own killed predecessor.
        current = self.store.lease_holder(self.name)
        if current is None or not _dead_local_holder(current[0]):
            return False
        return self.store.steal_lease(self.name, current[0], self.holder, self.ttl_seconds)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
