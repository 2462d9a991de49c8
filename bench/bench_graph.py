#!/usr/bin/env python3
"""Benchmark the Graph adapter against the simulator under gunicorn (keep-alive TLS), side by side:

  batched    GraphClient.gather_evidence: one $batch with the four parts (what the portal does)
  separate   the same four reads as four typed msgraph-sdk calls on the same request adapter
  bulk       GraphClient.methods_for over every seeded user: 20 per $batch
  cold start a fresh process's first diagnosis, without and with GraphClient.warm_up() beforehand

Round trips come from the simulator's own request log (a $batch counts once; its parts are listed
separately; token requests are not Graph). The simulator's throttling limits are raised for the
latency runs so that every call does the same work; the throttling behaviour has its own tests.

Usage: .venv/bin/python bench/bench_graph.py [--diagnoses 60] [--users 300]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.adapters.graph import GraphClient, _LOOP  # noqa: E402
from app.seed import DEMO_SEED  # noqa: E402
from tests.fixtures.simulator import start_simulator  # noqa: E402

DIAGNOSED = ("ada.lovelace@uni.test", "barbara.liskov@uni.test", "grace.hopper@uni.test", "donald.knuth@uni.test")
TARGET_ROUND_TRIPS = 1


def big_seed(path: Path, users: int) -> Path:
    """Write the demo seed plus generated half-registered students, up to `users` in all."""
    raw = yaml.safe_load(DEMO_SEED.read_text(encoding="utf-8"))
    for i in range(users - len(raw["users"])):
        raw["users"].append({"upn": f"student{i:04d}@uni.test", "display_name": f"Student {i}",
                             "state": "half_registered" if i % 3 else "registered"})
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def graph_client(sim) -> GraphClient:
    return GraphClient(sim.entra_authority, sim.graph_client_id, sim.secret(sim.graph_client_id), sim.graph_url,
                       ca_file=sim.ca_file)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def trips_since(sim, seq: int) -> tuple[int, int]:
    entries = [e for e in sim.requests_log(seq) if e["path"].startswith("/v1.0")]
    return sum(not e["batch_part"] for e in entries), sum(e["batch_part"] for e in entries)


async def four_separate_calls(graph: GraphClient, upn: str) -> None:
    """The unbatched alternative: the same four reads through the SDK's typed request builders."""
    from msgraph.graph_service_client import GraphServiceClient

    client = GraphServiceClient(request_adapter=graph._request_adapter())
    user = client.users.by_user_id(upn)
    await user.get()
    await user.authentication.methods.get()
    await user.registered_devices.get()
    from msgraph.generated.audit_logs.sign_ins.sign_ins_request_builder import SignInsRequestBuilder
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    query = SignInsRequestBuilder.SignInsRequestBuilderGetQueryParameters(
        filter=f"userPrincipalName eq '{upn}' and appId eq '4813382a-8fa7-425e-ab75-3b753aab3abb'", top=5)
    await client.audit_logs.sign_ins.get(RequestConfiguration(query_parameters=query))


def measure_diagnoses(sim, graph: GraphClient, count: int) -> dict[str, dict[str, float]]:
    graph.gather_evidence(DIAGNOSED[0])  # token, connection and typed models ready before timing
    _LOOP.run(four_separate_calls(graph, DIAGNOSED[0]), 30)
    results = {}
    for name, call in (("batched", lambda upn: graph.gather_evidence(upn)),
                       ("separate", lambda upn: _LOOP.run(four_separate_calls(graph, upn), 30))):
        seq, times = sim.last_seq(), []
        for i in range(count):
            started = time.perf_counter()
            call(DIAGNOSED[i % len(DIAGNOSED)])
            times.append(time.perf_counter() - started)
        trips, parts = trips_since(sim, seq)
        results[name] = {"round_trips": trips / count, "parts": parts / count,
                         "p50_ms": statistics.median(times) * 1000, "p95_ms": percentile(times, 95) * 1000}
    return results


def measure_bulk(sim, graph: GraphClient) -> dict[str, float]:
    upns = [u.upn for u in sim.seed.users if u.in_entra]
    seq, started = sim.last_seq(), time.perf_counter()
    results = graph.methods_for(upns)
    elapsed = time.perf_counter() - started
    trips, _ = trips_since(sim, seq)
    failed = sum(not isinstance(r, tuple) for r in results.values())
    return {"users": len(upns), "round_trips": trips, "seconds": elapsed, "failed": failed}


COLD = """
import sys, time, resource
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
from app.adapters.graph import GraphClient
g = GraphClient({authority!r}, {client_id!r}, {secret!r}, {graph_url!r}, ca_file={ca!r})
g._access_token()  # the app token, so that both variants pay the same before the timed part
t1 = time.perf_counter()
if {warm}:
    g.warm_up()
t2 = time.perf_counter()
g.gather_evidence("ada.lovelace@uni.test")
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def measure_cold(sim, warm: bool) -> list[float]:
    code = COLD.format(root=str(ROOT), authority=sim.entra_authority, client_id=sim.graph_client_id,
                       secret=sim.secret(sim.graph_client_id), graph_url=sim.graph_url, ca=sim.ca_file, warm=warm)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return [float(x) for x in out.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diagnoses", type=int, default=60)
    parser.add_argument("--users", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seed = big_seed(Path(tmp) / "seed.yaml", args.users)
        sim = start_simulator(Path(tmp) / "sim", "--method-delay", "0", seed_path=seed)
        try:
            sim.tune(reports_limit=1_000_000, directory_limit=1_000_000)
            graph = graph_client(sim)
            diagnoses = measure_diagnoses(sim, graph, args.diagnoses)
            bulk = measure_bulk(sim, graph)
            cold = {"without warm_up": measure_cold(sim, False), "with warm_up": measure_cold(sim, True)}
        finally:
            sim.stop()

    print(f"Diagnoses: {args.diagnoses} each way, simulator under gunicorn (1 process, 8 threads, keep-alive)")
    print("| variant | round trips / diagnosis | parts | p50 | p95 |")
    print("|---|---|---|---|---|")
    for name, r in diagnoses.items():
        print(f"| {name} | {r['round_trips']:.2f} | {r['parts']:.2f} | {r['p50_ms']:.1f} ms | {r['p95_ms']:.1f} ms |")
    ratio = diagnoses["separate"]["p50_ms"] / diagnoses["batched"]["p50_ms"]
    print(f"separate / batched (p50): {ratio:.2f}x; target {TARGET_ROUND_TRIPS} round trip: "
          f"{'met' if diagnoses['batched']['round_trips'] == TARGET_ROUND_TRIPS else 'MISSED'}")
    print(f"\nBulk: methods of {bulk['users']} users in {bulk['round_trips']} round trips "
          f"({bulk['round_trips'] / bulk['users']:.3f} per user), {bulk['seconds']:.2f} s, {bulk['failed']} failed")
    print("\nCold start (fresh process)\n| variant | import + token | warm_up | first diagnosis | max RSS |")
    print("|---|---|---|---|---|")
    for name, (start, warm, first, rss) in cold.items():
        print(f"| {name} | {start:.2f} s | {warm:.2f} s | {first * 1000:.0f} ms | {rss:.0f} MiB |")


if __name__ == "__main__":
    main()
