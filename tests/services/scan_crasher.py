"""A worker process for the scan crash test: it SIGKILLs itself inside the transaction of a scan's second chunk.

Usage: python -m tests.services.scan_crasher TMP_DIR SCAN_ID [chunk|finish]
The portal is the one tests/services/test_scan_crash.py built in TMP_DIR (the same settings and database). The
worker predicts scan SCAN_ID two students a tick. `chunk`: the first chunk commits, the second dies once one of
its students' rows is written inside its transaction, before the commit. `finish`: the worker dies once the
report and its audit line are written inside the finishing unit of work, before the commit.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import types
from pathlib import Path

from app.adapters.store import scans as scans_module
from tests.services.test_batch_crash import portal

CHUNK = 2


def main(folder: str, scan_id: str, where: str = "chunk") -> None:
    services = portal(Path(folder))
    services.scans.chunk = CHUNK
    if where == "finish":
        audit_run = services.scan.audit_run

        def dying_audit_run(*args, **kwargs):
            audit_run(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)

        services.scan.audit_run = dying_audit_run
        for _ in range(3):  # a tick per chunk, then the one that finds none left and finishes
            services.scans.work()
        sys.exit("the crash point was never reached")
    rows_written = [0]

    def dying_dumps(value, *args, **kwargs):
        rows_written[0] += 1
        if rows_written[0] > CHUNK:  # the second chunk's first row is in the open transaction
            os.kill(os.getpid(), signal.SIGKILL)
        return json.dumps(value, *args, **kwargs)

    scans_module.json = types.SimpleNamespace(dumps=dying_dumps, loads=json.loads)
    view = services.scans.scans.get(int(scan_id))
    services.scans.run_chunk(view)
    services.scans.run_chunk(services.scans.scans.get(int(scan_id)))
    sys.exit("the crash point was never reached")


if __name__ == "__main__":
    main(*sys.argv[1:])
