"""A worker process for the reminder crash test: it SIGKILLs itself inside the unit of work of a reminder pass.

Usage: python -m tests.services.batch_crasher TMP_DIR
The portal is the one tests/services/test_batch_crash.py built in TMP_DIR (the same settings and database);
the batch service's clock is two days on, so a reminder is due for every invited student. The process dies
once the reminders' new invites and mails are written inside the unit of work, before it commits.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from tests.services.test_batch_crash import portal, two_days_on


def main(folder: str) -> None:
    services = portal(Path(folder))
    services.batches.clock = two_days_on
    queue_many = services.outbox.queue_many

    def dying_queue_many(*args, **kwargs):
        queued = queue_many(*args, **kwargs)  # in the session: invites revoked and made, mails queued
        os.kill(os.getpid(), signal.SIGKILL)
        return queued

    services.outbox.queue_many = dying_queue_many
    services.invites.outbox = services.outbox
    services.batches.remind_due()
    sys.exit("the crash point was never reached")


if __name__ == "__main__":
    main(*sys.argv[1:])
