#!/usr/bin/env python3
"""Benchmark the memory of `proofup serve`'s workers and of `proofup worker`, and the throughput after many students.

Both run as shipped (`python -m app.cli serve` and `python -m app.cli worker`, settings from PROOFUP_*) on a
SQLite file, the embedded directory (PROOFUP_DEMO_DIRECTORY) and a Graph that is configured but never
reached (the grants have no Entra id: every poll is the database-only poll, and the worker asks Graph
nothing). Memory is read from /proc/PID/smaps_rollup: RSS, PSS (the fair share of shared pages) and USS
(the process's own pages), in MiB.

  serve    RSS/PSS/USS of each gunicorn worker at start (every worker has served), after warm-up (each of
           --distinct-serve students has polled), after a fifth of --requests and after --requests more
           requests (mixed: /status of the students in turn, one request in 20 the guide page, one in 50
           the start page), and the growth from warm-up to the end.
  worker   RSS/PSS/USS of `proofup worker` after its first --warm-cycles full cycles and after --cycles
           (PROOFUP_WORKER_INTERVAL_SECONDS=0.5), and the growth between the two. Its Graph is the simulator,
           and four of the seed's unfinished students have active grants with their Entra id, so every
           confirmation pass asks Graph for their methods (typed models, as in production; each grant at
           most once a second, PROOFUP_CHECK_INTERVAL_SECONDS=1).
  first    Seconds of warm_up(), then of the first and the second diagnosis (one $batch each, against the
           simulator) in three fresh processes: the first must not pay for imports the warm-up left out.
  students Throughput after --distinct students (default 20,000): two servers side by side on two copies of
           one database (the same rows), one fresh, one that has seen every other student poll once; wrk
           runs on the same --students alternate between them, the ratio is taken per round and the median
           reported (target: at least 0.9x). Before every measured run, the sessions' last-seen is moved back
           in that server's database, so both pay the same once-a-minute last-seen write of each session.

Usage: .venv/bin/python bench/bench_memory.py [--parts serve,worker,students] [--requests 50000]
       [--cycles 100] [--distinct 20000] [--rounds 5] [--seconds 10]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_status import (  # noqa: E402
    SESSION_COOKIE, WRK_SCRIPT, Served, browser_cookies, free_port, memory_of, open_sessions, portal_env, wrk,
)

# /status of each student in turn; one request in 20 is the guide page, one in 50 the start page.
MIXED_SCRIPT = WRK_SCRIPT.replace("""request = function()""", """request = function()
  if counter % 50 == 7 then
    counter = counter + 1
    return wrk.format("GET", "/")
  end
  if counter % 20 == 3 then
    counter = counter + 1
    return wrk.format("GET", "/guide", {["Cookie"] = cookies[counter % #cookies + 1]})
  end""")


def shipped_env(work: Path, database_url: str, code: Path = ROOT, **extra: str) -> dict[str, str]:
    """Return the environment of a portal as an admin configures it (embedded directory, Graph configured)."""
    from app.adapters.directory_embedded import EmbeddedDirectory
    from app.seed import load_seed

    directory = work / "directory.json"
    if not directory.exists():
        EmbeddedDirectory(load_seed(), state_file=directory)
    return {**portal_env(database_url), "PYTHONPATH": str(code), "PROOFUP_DEMO_DIRECTORY": str(directory),
            "PROOFUP_GRAPH_AUTHORITY": "https://login.bench.invalid/tenant", "PROOFUP_GRAPH_CLIENT_ID": "bench",
            "PROOFUP_GRAPH_CLIENT_SECRET": "bench-graph-secret", "PROOFUP_GRAPH_URL": "https://graph.bench.invalid/v1.0",
            "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="metrics-", dir=work), **extra}


class Serve(Served):
    """`proofup serve` as shipped, on a free loopback port (bench_status's Served reads its workers and stops it)."""

    def __init__(self, env: dict[str, str], work: Path):  # noqa: super().__init__ would start another gunicorn
        self.port = free_port()
        self.log = open(work / f"serve-{self.port}.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env={**env, "PROOFUP_PUBLIC_URL": self.url}, stdout=self.log, stderr=subprocess.STDOUT, cwd=work)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"proofup serve did not start; see {self.log.name}")


def mixed_requests(url: str, jar: Path, script: Path, total: int) -> dict[str, float]:
    """Send at least `total` requests with wrk (2 threads, 16 connections), in runs of at most 10 s; count them."""
    sent = {"requests": 0, "non2xx": 0, "errors": 0}
    while sent["requests"] < total:
        run = subprocess.run(["wrk", "-t2", "-c16", "-d10s", "-s", str(script), url, "--", str(jar)],
                             capture_output=True, text=True, check=True)
        sent["requests"] += int(re.search(r"(\d+) requests in", run.stdout).group(1))
        sent["non2xx"] += int((re.search(r"Non-2xx or 3xx responses: (\d+)", run.stdout) or [0, 0])[1])
        sent["errors"] += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", run.stdout))
    return sent


def measure_serve(work: Path, args, code: Path) -> dict:
    url = f"sqlite:///{work}/serve-{code.name}.sqlite3"
    students = [f"student{i:05d}@uni.test" for i in range(args.distinct_serve)]
    tokens = open_sessions(url, students, work / "serve-tokens.txt", grants=True)
    script = work / "mixed.lua"
    script.write_text(MIXED_SCRIPT)
    served = Serve(shipped_env(work, url, code), work)
    try:
        jar = work / "serve-jar.txt"
        jar.write_text("".join(f"{SESSION_COOKIE}={t}\n" for t in tokens.read_text().split()))
        wrk(served.url, jar, script, 2)  # every worker has served each kind of page
        started = served.memory()
        # Warm-up: every student has polled (the caches hold what a steady load puts there), then the requests.
        mixed_requests(served.url, jar, script, int(args.distinct_serve * 1.2))
        warm = served.memory()
        print("serve at start", json.dumps(started), "after warm-up", json.dumps(warm), flush=True)
        middle_sent = mixed_requests(served.url, jar, script, args.requests // 5)
        middle = served.memory()
        rest = mixed_requests(served.url, jar, script, args.requests - middle_sent["requests"])
        sent = {key: middle_sent[key] + rest[key] for key in rest}
        after = served.memory()
        print("serve after", middle_sent, json.dumps(middle), "and after", sent, json.dumps(after), flush=True)
    finally:
        served.stop()
    return {"started": started, "warm": warm, "middle": middle, "middle_sent": middle_sent, "after": after,
            "sent": sent}


def worker_cycles(metrics_dir: str) -> int:
    """Return how many full cycles the worker has finished (its own metric, read from the multiprocess files)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_dir)
    return int(registry.get_sample_value("proofup_worker_cycle_seconds_count") or 0)


# Students of the demo seed who have not finished: the worker's confirmation passes ask Graph for their methods.
GRAPH_STUDENTS = ("ada.lovelace@uni.test", "alan.turing@uni.test", "grace.hopper@uni.test", "edsger.dijkstra@uni.test")


def graph_grants(url: str, sim, directory_file: Path) -> None:
    """Give the seed's unfinished students an active grant with their Entra id and the bypass, as after an unlock."""
    from datetime import datetime, timedelta, timezone

    from app.adapters.directory_embedded import EmbeddedDirectory
    from app.adapters.store import Store
    from app.domain.grants import GrantState

    directory, store, now = EmbeddedDirectory.open(directory_file), Store(url), datetime.now(timezone.utc)
    for upn in GRAPH_STUDENTS:
        dn = directory.find_user(upn).dn
        directory.add_member(sim.seed.bypass_group_dn, dn)
        grant, _ = store.create_grant(upn=upn, user_dn=dn, actor=upn, reason="bench", created_at=now,
                                      entra_user_id=sim.seed.user(upn).object_id, expires_at=now + timedelta(hours=4))
        store.move_grant(grant.id, GrantState.ACTIVE, activated_at=now, dc_confirmed=True)
    store.dispose()


def measure_worker(work: Path, args, code: Path, sim) -> dict:
    url = f"sqlite:///{work}/worker-{code.name}.sqlite3"
    open_sessions(url, [f"student{i:05d}@uni.test" for i in range(300)], work / "worker-tokens.txt", grants=True)
    env = shipped_env(work, url, code, PROOFUP_WORKER_INTERVAL_SECONDS="0.5", PROOFUP_CONFIRM_INTERVAL_SECONDS="0.5",
                      PROOFUP_CHECK_INTERVAL_SECONDS="1",
                      PROOFUP_GRAPH_AUTHORITY=sim.entra_authority, PROOFUP_GRAPH_CLIENT_ID=sim.graph_client_id,
                      PROOFUP_GRAPH_CLIENT_SECRET=sim.secret(sim.graph_client_id), PROOFUP_GRAPH_URL=sim.graph_url,
                      PROOFUP_CA_BUNDLE=sim.ca_file)
    graph_grants(url, sim, Path(env["PROOFUP_DEMO_DIRECTORY"]))
    log = open(work / f"worker-{code.name}.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, cwd=work)
    found: dict = {}
    try:
        for name, cycles in (("warm", args.warm_cycles), ("after", args.warm_cycles + args.cycles)):
            deadline = time.monotonic() + 30 + cycles * 2
            while worker_cycles(env["PROMETHEUS_MULTIPROC_DIR"]) < cycles:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the worker stopped or stalled; see {log.name}")
                time.sleep(0.2)
            found[name] = memory_of(process.pid)
            print(f"worker after {cycles} cycles", json.dumps(found[name]), flush=True)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    found["graph_requests"] = sum(1 for e in sim.requests_log(0) if e["path"].startswith("/v1.0") and not e["batch_part"])
    return found


FIRST_DIAGNOSIS = """
import json, os, sys, time
from app.adapters.graph import GraphClient

graph = GraphClient(os.environ["T_AUTHORITY"], os.environ["T_CLIENT_ID"], os.environ["T_SECRET"],
                    os.environ["T_GRAPH_URL"], ca_file=os.environ["T_CA"])
timings = {}
for step, run in (("warm_up", graph.warm_up), ("first", lambda: graph.gather_evidence("ada.lovelace@uni.test")),
                  ("second", lambda: graph.gather_evidence("alan.turing@uni.test"))):
    started = time.perf_counter()
    run()
    timings[step] = time.perf_counter() - started
print(json.dumps(timings))
"""


def measure_first_diagnosis(code: Path, sim, repeats: int = 3) -> list[dict[str, float]]:
    """Time warm_up() and the first and second diagnosis (one $batch each) in fresh processes of one checkout."""
    env = {**os.environ, "PYTHONPATH": str(code), "T_AUTHORITY": sim.entra_authority,
           "T_CLIENT_ID": sim.graph_client_id, "T_SECRET": sim.secret(sim.graph_client_id),
           "T_GRAPH_URL": sim.graph_url, "T_CA": sim.ca_file}
    runs = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", FIRST_DIAGNOSIS], env=env, capture_output=True, text=True,
                              check=True)
        runs.append(json.loads(done.stdout.splitlines()[-1]))
    return runs


def age_last_seen(database: Path) -> None:
    """Move every session's last-seen back two minutes, so the next poll of each writes it again."""
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT token_hash, last_seen_at FROM portal_sessions").fetchall()
        db.executemany("UPDATE portal_sessions SET last_seen_at = ? WHERE token_hash = ?",
                       [(_two_minutes_before(seen), token) for token, seen in rows])


def _two_minutes_before(stored: str) -> str:
    from datetime import datetime, timedelta

    text = stored.replace("T", " ")
    moment = datetime.fromisoformat(text) - timedelta(minutes=2)
    return moment.isoformat(sep=" ")


def measure_students(work: Path, args) -> dict:
    fresh_db, seen_db = work / "fresh.sqlite3", work / "seen.sqlite3"
    tokens = open_sessions(f"sqlite:///{fresh_db}", [f"student{i:05d}@uni.test" for i in range(args.students)],
                           work / "tokens.txt", grants=True)
    others = open_sessions(f"sqlite:///{fresh_db}", [f"other{i:06d}@uni.test" for i in range(args.distinct)],
                           work / "others.txt", grants=False)
    shutil.copy(fresh_db, seen_db)  # the same rows in both: only what the process has seen differs
    status_script = work / "status.lua"
    status_script.write_text(WRK_SCRIPT)
    servers = {"fresh": Serve(shipped_env(work, f"sqlite:///{fresh_db}"), work),
               "seen": Serve(shipped_env(work, f"sqlite:///{seen_db}"), work)}
    try:
        jars = {name: browser_cookies(s.url, tokens, work / f"jar-{name}.txt") for name, s in servers.items()}
        others_jar = work / "others-jar.txt"
        others_jar.write_text("".join(f"{SESSION_COOKIE}={t}\n" for t in others.read_text().split()))
        script = work / "mixed.lua"
        script.write_text(MIXED_SCRIPT)
        # Every other student polls the "seen" server (1.1 requests each: some twice), none the fresh one.
        sent = mixed_requests(servers["seen"].url, others_jar, status_script_counting(work), int(args.distinct * 1.1))
        print("others polled", sent, flush=True)
        for name, served in servers.items():
            wrk(served.url, jars[name], status_script, 2)  # warm-up: every worker has served
        rounds = []
        for round_no in range(args.rounds):
            measured = {}
            order = ("fresh", "seen") if round_no % 2 == 0 else ("seen", "fresh")
            for name in order:
                age_last_seen(fresh_db if name == "fresh" else seen_db)
                measured[name] = wrk(servers[name].url, jars[name], status_script, args.seconds)
            measured["ratio"] = measured["seen"]["rps"] / measured["fresh"]["rps"]
            rounds.append(measured)
            print(f"round {round_no + 1}: fresh {measured['fresh']['rps']:.0f} req/s, seen {measured['seen']['rps']:.0f}"
                  f" req/s, {measured['ratio']:.2f}x; load {os.getloadavg()[0]:.1f}", flush=True)
        memory = {name: s.memory() for name, s in servers.items()}
    finally:
        for served in servers.values():
            served.stop()
    return {"rounds": rounds, "median": statistics.median(r["ratio"] for r in rounds), "memory": memory,
            "others_polled": sent}


def status_script_counting(work: Path) -> Path:
    """Return a wrk script that only polls /status, each thread stopping after its share of requests."""
    script = work / "status-counting.lua"
    script.write_text(MIXED_SCRIPT.replace("counter % 50 == 7", "false").replace("counter % 20 == 3", "false"))
    return script


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="serve,worker,first,students")
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--distinct-serve", type=int, default=5000, help="students polling in the serve part")
    parser.add_argument("--warm-cycles", type=int, default=5)
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--distinct", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--baseline", type=Path, help="another checkout of the portal (e.g. a worktree of main): "
                        "the serve and worker parts measure it too, one after the other in the same run")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    parts = args.parts.split(",")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = {"started": started, "load_at_start": os.getloadavg()}
    try:
        codes = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
        for label, code in codes.items():
            if "serve" in parts:
                results.setdefault("serve", {})[label] = measure_serve(work, args, code)
        if "worker" in parts or "first" in parts:
            from tests.fixtures.simulator import start_simulator

            for label, code in codes.items():
                sim = start_simulator(work / f"simulator-{label}")  # each worker's Graph requests counted alone
                try:
                    if "first" in parts:
                        sim.tune(reports_limit=1000)  # not a throttling test
                        results.setdefault("first", {})[label] = measure_first_diagnosis(code, sim)
                        sim.tune(reports_limit=5)
                    if "worker" in parts:
                        results.setdefault("worker", {})[label] = measure_worker(work, args, code, sim)
                finally:
                    sim.stop()
        if "students" in parts:
            results["students"] = measure_students(work, args)
    except Exception:
        print(f"kept for a look: {work}", file=sys.stderr)
        raise
    results["load_at_end"] = os.getloadavg()
    report(results)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def shown(memory: dict[str, float]) -> str:
    return f"RSS {memory['rss']:.1f} / PSS {memory['pss']:.1f} / USS {memory['uss']:.1f} MiB"


def report(results: dict) -> None:
    print(f"\nrun of {results['started']}; load average at start {results['load_at_start'][0]:.1f}, "
          f"at end {results['load_at_end'][0]:.1f}")
    for label, s in results.get("serve", {}).items():
        print(f"{label}: {s['sent']['requests']} requests after the warm-up, {s['sent']['non2xx']} not 2xx or 3xx, "
              f"{s['sent']['errors']} socket errors")
        for i, (started, warm, middle, after) in enumerate(zip(s["started"], s["warm"], s["middle"], s["after"])):
            print(f"{label}: portal worker {i + 1}: at start {shown(started)}; after warm-up {shown(warm)}; after "
                  f"{s['middle_sent']['requests']} requests {shown(middle)}; after {s['sent']['requests']} {shown(after)}; "
                  f"growth RSS {after['rss'] - warm['rss']:+.1f} USS {after['uss'] - warm['uss']:+.1f}")
    for label, w in results.get("worker", {}).items():
        print(f"{label}: proofup worker: after warm-up {shown(w['warm'])}; after the cycles {shown(w['after'])}; "
              f"growth RSS {w['after']['rss'] - w['warm']['rss']:+.1f} USS {w['after']['uss'] - w['warm']['uss']:+.1f}; "
              f"{w['graph_requests']} Graph requests")
    for label, runs in results.get("first", {}).items():
        print(f"{label}: seconds (fresh processes) " + "; ".join(
            ", ".join(f"{step} {seconds:.2f}" for step, seconds in run.items()) for run in runs))
    if "students" in results:
        st = results["students"]
        print("after the other students, x fresh per round: " + ", ".join(f"{r['ratio']:.2f}" for r in st["rounds"])
              + f" -> median {st['median']:.2f}")
        for name, memory in st["memory"].items():
            print(f"  {name}: " + "; ".join(shown(m) for m in memory))


if __name__ == "__main__":
    sys.exit(main())
