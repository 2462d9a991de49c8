#!/usr/bin/env python3
"""Benchmark a desk scan run by the worker (ScanJobs: 500 students a tick, each chunk stored) against the same
scan in one go (ScanService.scan, as `proofup scan` runs it), side by side in one run, for the same students.

Real parts as in bench/bench_scan.py (bulk_bench): the seeded simulator over https with Microsoft's throttling,
the GraphClient adapter, the SQLite store, the embedded directory. Measured: Graph round trips, report requests
(sign-in pages: each chunk reads the tenant's once), 429s, time, and that both give the same outcome per student.

Usage: .venv/bin/python bench/bench_scan_worker.py [--students 2000]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scan import ADMIN, bulk_bench, graph_log, students_wanted  # noqa: E402

from app.adapters.store import ScanStore  # noqa: E402
from app.domain.actors import Actor  # noqa: E402
from app.services.scan import OU, ScanJobs, ScanService  # noqa: E402

DESK = Actor.staff("hedy.lamarr@uni.test", role="helpdesk", reason="benchmark")


def main() -> int:
    students = students_wanted()
    with bulk_bench(students) as bench:
        sim = bench.sim
        scan = ScanService(directory=bench.directory, bulk=bench.bulk, store=bench.store, max_students=students + 50)
        jobs = ScanJobs(scan, ScanStore(bench.store))
        ou = f"{bench.seed.users_ou},{bench.seed.base_dn}"
        upns = scan.students_in(OU, ou)

        time.sleep(10.5)  # let the reports window empty: each variant starts with a full budget
        since, started = sim.last_seq(), time.monotonic()
        report = scan.scan(upns, actor=ADMIN, source=f"ou:{ou}")
        one_seconds, one_log = time.monotonic() - started, graph_log(sim, since)

        time.sleep(10.5)
        since, started = sim.last_seq(), time.monotonic()
        scan_id = jobs.start(OU, ou, actor=DESK)
        ticks = 0
        while jobs.scans.get(scan_id).state == "running":
            jobs.work()
            ticks += 1
        worker_seconds, worker_log = time.monotonic() - started, graph_log(sim, since)
        view = jobs.scans.get(scan_id)
        same = {p.upn: p.outcome.value for p in report.predictions} == \
            {row["upn"]: row["outcome"] for row in view.report["rows"]}

        print(f"\n## A desk scan of {len(upns)} students: the worker's chunks against one go "
              f"({'same outcome for every student' if same else 'OUTCOMES DIFFER'})\n")
        print("| Variant | Graph requests | report requests (sign-in pages) | 429 | worker ticks | time |")
        print("|---|---|---|---|---|---|")
        print(f"| one go (`ScanService.scan`, `proofup scan`) | {one_log['round_trips']} | "
              f"{one_log['report_requests']} | {one_log['throttled']} | - | {one_seconds:.1f} s |")
        print(f"| the worker (`ScanJobs`, {jobs.chunk} a tick, each chunk stored) | {worker_log['round_trips']} | "
              f"{worker_log['report_requests']} | {worker_log['throttled']} | {ticks} | {worker_seconds:.1f} s |")
        print(f"\nRatio worker/one go: time {worker_seconds / one_seconds:.2f}x, Graph requests "
              f"{worker_log['round_trips'] / max(1, one_log['round_trips']):.2f}x; state {view.state}, "
              f"{view.done} of {view.total}.")
    return 0 if same and view.state == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
