"""A worker killed in the middle of a desk scan: the chunks it committed stay, the one under way is done again by
the next worker, and the report names each student once and is audited once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from app.domain.actors import Actor
from app.services.scan import LIST
from tests.services.test_batch_crash import ROOT, portal

DESK = Actor.staff("hedy.lamarr@uni.test", role="helpdesk", reason="intake 2026")
STUDENTS = ["ada.lovelace@uni.test", "alan.turing@uni.test", "grace.hopper@uni.test", "edsger.dijkstra@uni.test",
            "barbara.liskov@uni.test"]


def test_a_worker_killed_mid_scan_loses_only_its_chunk_and_the_next_worker_finishes_the_scan(tmp_path):
    services = portal(tmp_path)
    jobs = services.scans
    scan_id = jobs.start(LIST, STUDENTS, actor=DESK, source="list:pasted")

    child = subprocess.run([sys.executable, "-m", "tests.services.scan_crasher", str(tmp_path), str(scan_id)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert jobs.scans.get(scan_id).state == "running"
    assert jobs.scans.checked(scan_id) == 2  # the first chunk stayed, the second left no row
    assert jobs.scans.unchecked(scan_id, 10) == STUDENTS[2:]
    assert services.store.audit_events(action="scan.run") == []

    jobs.chunk = 2
    while jobs.scans.get(scan_id).state == "running":
        jobs.work()
        view = jobs.scans.get(scan_id)
        assert view.done <= view.total
    done = jobs.scans.get(scan_id)
    assert done.state == "done" and done.done == len(STUDENTS)
    assert sorted(row["upn"] for row in done.report["rows"]) == sorted(STUDENTS)
    runs = services.store.audit_events(action="scan.run")
    assert len(runs) == 1 and runs[0].detail["students"] == len(STUDENTS)


def test_a_worker_killed_while_finishing_a_scan_leaves_it_running_unaudited_and_the_next_tick_finishes_it_once(
        tmp_path):
    services = portal(tmp_path)
    jobs = services.scans
    scan_id = jobs.start(LIST, STUDENTS[:2], actor=DESK, source="list:pasted")

    child = subprocess.run([sys.executable, "-m", "tests.services.scan_crasher", str(tmp_path), str(scan_id),
                            "finish"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert jobs.scans.get(scan_id).state == "running" and jobs.scans.checked(scan_id) == 2
    assert services.store.audit_events(action="scan.run") == []  # neither done nor audited: the two go together

    assert jobs.work() == 0  # nothing left to predict: the tick only finishes it
    assert jobs.scans.get(scan_id).state == "done"
    assert len(services.store.audit_events(action="scan.run")) == 1
