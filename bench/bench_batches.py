#!/usr/bin/env python3
"""Benchmark a weekly batch's CSV intake and bulk check against Microsoft's Graph limits.

Real parts: the simulator (Graph with Microsoft's documented throttling: 5 report requests per 10 s per app
and tenant, the directory's token bucket) over https in a child process, the GraphClient adapter (msgraph-sdk,
msal), the database budget and the batch tables (SQLite), the embedded directory, BulkDiagnosisService and
BatchService (upload, then the worker's check_batch). Requests and 429s are counted in the simulator's own
request log, not by the client.

In one run:
1. a batch of 30 (the desk's week): Graph requests of the check (target: 2);
2. a CSV of 2,000 rows: the intake (read, every row checked, the batch written) and the check, with the
   time of each, Graph requests, report requests and every 429 (target: none).

Usage: .venv/bin/python bench/bench_batches.py [--students 2000]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scan import bulk_bench, graph_log  # noqa: E402

from app.adapters.store import BatchStore  # noqa: E402
from app.domain.actors import WORKER, Actor  # noqa: E402
from app.domain.batch_csv import read_batch_csv  # noqa: E402
from app.services.batches import BatchService  # noqa: E402

DESK = Actor.staff("hedy.lamarr@uni.test", role="helpdesk", reason="benchmark")
TARGET_BATCH_REQUESTS = 2


def csv_of(count: int) -> bytes:
    """Return a batch file as Excel writes it: BOM, semicolons, CRLF; UPN, mail and name."""
    lines = ["UserPrincipalName;E-Mail;Display Name"]
    lines += [f"student{i:04d}@uni.test;student{i:04d}@mail.uni.test;Student {i:04d}" for i in range(count)]
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode()


def checked(desk: BatchService, sim, data: bytes) -> dict:
    """Upload a file and run the worker's check; return the times and what Graph saw."""
    started = time.monotonic()
    batch = desk.upload(DESK, data, label="bench", file_name="bench.csv")
    intake = time.monotonic() - started
    since, started = sim.last_seq(), time.monotonic()
    rows = desk.check_batch(batch.id, WORKER)
    check = time.monotonic() - started
    state = desk.batches.get(batch.id)
    selected = sum(1 for r in desk.batches.rows(batch.id) if r.selected)
    return {"rows": rows, "intake": intake, "check": check, "log": graph_log(sim, since), "state": state.state.value,
            "selected": selected}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=2000)
    args = parser.parse_args()
    with bulk_bench(args.students) as bench:
        sim = bench.sim
        desk = BatchService(batches=BatchStore(bench.store), bulk=bench.bulk, invites=None, onboarding=None,
                            store=bench.store)
        data = csv_of(args.students)
        started = time.monotonic()
        for _ in range(5):
            read_batch_csv(data)
        read_only = (time.monotonic() - started) / 5
        time.sleep(10.5)  # the reports window empties: each part starts with a full budget

        week = checked(desk, sim, csv_of(30))
        time.sleep(10.5)
        big = checked(desk, sim, data)
        print("\n## Weekly batches\n")
        print("| Batch | rows | intake (read + write) | check (AD + Graph + classify) | Graph requests | "
              "report requests | 429 | selected |")
        print("|---|---|---|---|---|---|---|---|")
        for name, run in (("a week (30)", week), (f"{args.students} rows", big)):
            log = run["log"]
            print(f"| {name} | {run['rows']} | {run['intake']:.2f} s | {run['check']:.1f} s | "
                  f"**{log['round_trips']}** | {log['report_requests']} | **{log['throttled']}** | "
                  f"{run['selected']} |")
        print(f"\nReading the {args.students}-row CSV alone (every row checked): {read_only * 1000:.0f} ms.")
        print(f"Target {TARGET_BATCH_REQUESTS} Graph requests for 30: "
              f"{'met' if week['log']['round_trips'] <= TARGET_BATCH_REQUESTS else 'MISSED'}; "
              f"no 429: {'met' if big['log']['throttled'] == 0 else 'MISSED'}; both batches ready: "
              f"{week['state'] == big['state'] == 'ready'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
