#!/usr/bin/env python3
"""Benchmark the scan ("who will loop") and the bulk diagnosis against Microsoft's Graph limits.

Real parts: the simulator (Graph with Microsoft's documented throttling: 5 report requests per 10 s per app
and tenant, 8,000 directory units per 10 s for a tenant of this size) over https in a child process
(gunicorn, keep-alive TLS), the GraphClient adapter (msgraph-sdk, msal), the database budget (SQLite), the
embedded directory, BulkDiagnosisService and ScanService. Requests and 429s are counted in the simulator's
own request log, not by the client.

Side by side in one run, for the same students:
1. a batch of 30: the bulk diagnosis (target: 2 Graph requests) against the single diagnosis once per
   student (gather_evidence: one $batch each, its sign-in part spending the reports budget);
2. the scan of 2,000 students: Graph requests, report requests (sign-in pages) against one per student,
   time, every 429.

Usage: .venv/bin/python bench/bench_scan.py [--students 2000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.adapters.budget import DatabaseBudget  # noqa: E402
from app.adapters.directory_embedded import EmbeddedDirectory  # noqa: E402
from app.adapters.graph import GraphClient  # noqa: E402
from app.adapters.store import Store  # noqa: E402
from app.domain.actors import Actor  # noqa: E402
from app.domain.state import Policy  # noqa: E402
from app.seed import DEMO_SEED, load_seed  # noqa: E402
from app.services.bulk_diagnosis import BulkDiagnosisService  # noqa: E402
from app.services.scan import OU, ScanService  # noqa: E402
import tests.fixtures.simulator as simulator_fixture  # noqa: E402
from tests.fixtures.simulator import start_simulator  # noqa: E402

ADMIN = Actor.cli("bench", reason="benchmark")
STATES = ("half_registered", "registered", "unregistered")
REPORTS_PER_10S = 5
TARGET_BATCH_REQUESTS = 2


def make_seed(path: Path, students: int) -> Path:
    """Write the demo seed plus generated students: a third half-registered, registered, unregistered each."""
    raw = yaml.safe_load(DEMO_SEED.read_text(encoding="utf-8"))
    raw["users"] += [{"upn": f"student{i:04d}@uni.test", "display_name": f"Student {i:04d}",
                      "state": STATES[i % 3]} for i in range(students)]
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def graph_log(sim, since: int) -> dict:
    """Count what Graph saw since a sequence number: round trips, parts, report parts, and 429s."""
    entries = [e for e in sim.requests_log(since) if e["path"].startswith("/v1.0")]
    parts = [e for e in entries if e["batch_part"]]
    reports = [e for e in entries if e["path"].startswith(("/v1.0/auditLogs", "/v1.0/reports"))]
    return {"round_trips": sum(1 for e in entries if not e["batch_part"]), "parts": len(parts),
            "report_requests": len(reports), "throttled": sum(1 for e in entries if e["status"] == 429)}


@dataclass
class BulkBench:
    """The real parts a bulk benchmark drives: the seeded simulator, the portal's store, Graph, the directory."""

    seed: Any
    sim: Any
    store: Store
    graph: GraphClient
    directory: EmbeddedDirectory
    bulk: BulkDiagnosisService


@contextmanager
def bulk_bench(students: int) -> Iterator[BulkBench]:
    """Start the simulator with the demo seed plus `students` generated ones, and the bulk diagnosis over it."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        seed_path = make_seed(folder / "seed.yaml", students)
        seed = load_seed(seed_path)
        simulator_fixture.START_TIMEOUT = 300.0  # the simulator hashes 2,000 demo passwords before it answers
        sim = start_simulator(folder / "sim", "--method-delay", "0", seed_path=seed_path)
        try:
            store = Store(f"sqlite:///{folder / 'portal.sqlite3'}")
            store.upgrade()
            graph = GraphClient(sim.entra_authority, sim.graph_client_id, sim.secret(sim.graph_client_id),
                                sim.graph_url, ca_file=sim.ca_file, budget=DatabaseBudget(store))
            directory = EmbeddedDirectory(seed)
            policy = Policy(required_group_dn=seed.required_group_dn, bypass_group_dn=seed.bypass_group_dn,
                            privileged_group_dns=(seed.privileged_group_dn,))
            bulk = BulkDiagnosisService(directory=directory, graph=graph, store=store, policy=policy)
            graph.warm_up()
            graph.gather_evidence("barbara.liskov@uni.test")  # token and typed models ready
            yield BulkBench(seed, sim, store, graph, directory, bulk)
        finally:
            sim.stop()


def students_wanted() -> int:
    """Read --students (how many generated students a bulk benchmark seeds; 2,000 unless told)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=2000)
    return parser.parse_args().students


def main() -> int:
    students = students_wanted()
    with bulk_bench(students) as bench:
        seed, sim, graph, bulk = bench.seed, bench.sim, bench.graph, bench.bulk
        scan = ScanService(directory=bench.directory, bulk=bulk, store=bench.store, max_students=students + 50)
        time.sleep(10.5)  # let the reports window empty: each part below starts with a full budget

        batch = [f"student{i:04d}@uni.test" for i in range(30)]
        since, started = sim.last_seq(), time.monotonic()
        result = bulk.diagnose_many(batch, actor=ADMIN)
        bulk_seconds, bulk_log = time.monotonic() - started, graph_log(sim, since)
        time.sleep(10.5)
        since, started = sim.last_seq(), time.monotonic()
        singles = [graph.gather_evidence(upn) for upn in batch]
        single_seconds, single_log = time.monotonic() - started, graph_log(sim, since)
        unread = sum(1 for e in singles if "sign_ins" in e.errors)
        same = all(result.diagnoses[u].evidence.user == e.user for u, e in zip(batch, singles))
        print(f"\n## A batch of 30 ({'same Entra users' if same else 'DIFFERENT users'})\n")
        print("| Variant | Graph requests | $batch parts | report requests | 429 | sign-ins not read | time |")
        print("|---|---|---|---|---|---|---|")
        print(f"| **bulk** (`diagnose_many`) | **{bulk_log['round_trips']}** | {bulk_log['parts']} | "
              f"{bulk_log['report_requests']} | {bulk_log['throttled']} | 0 | {bulk_seconds:.2f} s |")
        print(f"| one diagnosis per student | {single_log['round_trips']} | {single_log['parts']} | "
              f"{single_log['report_requests']} | {single_log['throttled']} | {unread} of 30 | "
              f"{single_seconds:.2f} s |")
        print(f"\nTarget {TARGET_BATCH_REQUESTS} requests: {'met' if bulk_log['round_trips'] <= 2 else 'MISSED'}"
              f" ({bulk_log['round_trips']}).")

        time.sleep(10.5)
        ou = f"{seed.users_ou},{seed.base_dn}"
        upns = scan.students_in(OU, ou)
        since, started = sim.last_seq(), time.monotonic()
        phases: dict[str, float] = {}
        report = scan.scan(upns, actor=ADMIN, source=f"ou:{ou}",
                           progress=lambda p: phases.setdefault(p.phase, time.monotonic() - started))
        seconds, log = time.monotonic() - started, graph_log(sim, since)
        counts = {o.value: n for o, n in report.counts().items()}
        floor = len(upns) / REPORTS_PER_10S * 10
        print(f"\n## The scan of {len(upns)} students\n")
        print("| Measure | Value |")
        print("|---|---|")
        print(f"| Graph requests (round trips) | {log['round_trips']} ({report.graph_requests} by the client) |")
        print(f"| `$batch` parts | {log['parts']} |")
        print(f"| report requests (sign-in pages) | **{log['report_requests']}** against {len(upns)} "
              f"(one per student) |")
        print(f"| 429 answers from Graph | **{log['throttled']}** |")
        print(f"| time | **{seconds:.1f} s** (AD {phases.get('graph', 0):.1f} s, Graph and classification "
              f"{seconds - phases.get('graph', 0):.1f} s) |")
        print(f"| one report request per student would need at least | {floor:.0f} s "
              f"({len(upns)} requests at 5 per 10 s) |")
        print(f"| outcomes | {', '.join(f'{k} {v}' for k, v in counts.items())} |")
        print(f"| complete | {report.complete} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
