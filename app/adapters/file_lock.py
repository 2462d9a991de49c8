"""An exclusive lock on a file, held across threads and processes of one machine (flock)."""
from __future__ import annotations

import fcntl
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def exclusive_lock(lock_path: str) -> Iterator[None]:
    """Hold an exclusive lock on lock_path (created if missing) until the block ends."""
    with open(lock_path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
