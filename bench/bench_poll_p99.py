#!/usr/bin/env python3
"""Benchmark the p99 of GET /status at the orientation rate, database-only polls against polls while grants come due.

Served as `proofup serve` serves it (`app:create_wsgi_app()` under app.cli.gunicorn_argv: preloaded, gthread,
2 workers x 4 threads, the same hooks), with `proofup worker` running beside it, both configured as the demo
is (PROOFUP_ENV_FILE) against the simulator's Entra and Graph (in this process, over TLS, with Microsoft's
throttling) and the embedded directory. An open-loop driver (a child process, asyncio) sends each of
--students signed-in students' polls every --period seconds (300 every 2 s: 150 polls/s), evenly spread,
each on a new connection as nginx's upstream does (deploy/nginx: no keep-alive), and measures the latency
from the SCHEDULED send time, so queueing counts. A student whose status becomes final stops polling, as
the guide page does. Variants, alternating in each round:

  db       grants without an Entra id: never due, every poll answered from the database
  due      grants with Entra ids, unlocked as the run starts, PROOFUP_CHECK_INTERVAL_SECONDS and
           PROOFUP_CONFIRM_INTERVAL_SECONDS short (--check, 2 s) so grants keep coming due; --registrants of the
           students register the Authenticator during the run, so releases happen
  metrics  as db, plus a Prometheus scraper (PROOFUP_METRICS_TOKEN set, /metrics every --scrape seconds)

--baseline serves another checkout (e.g. main before a change) in the same rounds, on its own database:
before and after in one run. Reported per variant: polls, p50/p95/p99/max, non-200 answers, the server's
CPU per poll (gunicorn's processes, from /proc), the worker's CPU, Graph requests (the simulator's log);
the ratios p99(due)/p99(db) (target: at most 3) and metrics/db (target: under 5%).

Usage: .venv/bin/python bench/bench_poll_p99.py [--rounds 3] [--seconds 20] [--baseline /path/to/checkout]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The seeding child runs against the checkout under test (its own schema): that checkout's `app` goes first.
CHECKOUT = Path(os.environ.get("PROOFUP_BENCH_CHECKOUT", ROOT))
sys.path[:0] = [str(CHECKOUT), str(ROOT)]

FINAL_PHASES = ("done", "expired", "cancelled", "failed", "none")
TARGET_RATIO = 3.0
DRAIN_SECONDS = 20.0
METRICS_TARGET = 0.05


# -- the driver (a child process: the simulator in the parent must not share its event loop or GIL) -----------

async def _poll(host: str, port: int, cookie: str) -> tuple[int, str]:
    """Send one GET /status on a new connection; return (HTTP status, phase)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET /status HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\n"
                     "Accept: application/json\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        phase = json.loads(body).get("phase", "") if status == 200 else ""
    except ValueError:
        phase = ""
    return status, phase


async def _drive(host: str, port: int, cookies: list[str], period: float, warmup: float, seconds: float) -> dict:
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5
    measured_from, end = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    final: set[int] = set()
    tasks: list[asyncio.Task] = []
    task_scheduled: dict[asyncio.Task, float] = {}

    async def one(student: int, scheduled: float) -> None:
        try:
            status, phase = await _poll(host, port, cookies[student])
        except OSError as exc:
            status, phase = 0, type(exc).__name__
        if phase in FINAL_PHASES:
            final.add(student)
        if scheduled >= measured_from:
            latencies.append(loop.time() - scheduled)
            statuses[str(status)] = statuses.get(str(status), 0) + 1

    spacing = period / len(cookies)
    tick = 0
    while True:
        scheduled = start + tick * spacing
        if scheduled >= end:
            break
        student = tick % len(cookies)
        tick += 1
        if student in final:
            continue  # the page stops polling once the status is final
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(one(student, scheduled))  # open loop: never waits for an answer
        task_scheduled[task] = scheduled
        tasks.append(task)
    # A saturated server would make the run last as long as its queue: polls unanswered DRAIN_SECONDS after the
    # last send count with the time they waited so far (a lower bound) and are reported as unanswered.
    pending: set[asyncio.Task] = set()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, end + DRAIN_SECONDS - loop.time()))
    unanswered = 0
    for task in pending:
        task.cancel()
    now = loop.time()
    for task in pending:
        scheduled = task_scheduled[task]
        if scheduled >= measured_from:
            latencies.append(now - scheduled)
            unanswered += 1
    return {"latencies": latencies, "statuses": statuses, "final": len(final), "unanswered": unanswered}


def drive(url: str, jar: Path, period: float, warmup: float, seconds: float) -> dict:
    """Run the open-loop driver in a child process; return what it measured."""
    run = subprocess.run([sys.executable, __file__, "--drive", url, str(jar), str(period), str(warmup), str(seconds)],
                         capture_output=True, text=True, check=True)
    return json.loads(run.stdout)


# -- seeding (a child process against the checkout under test: its schema, its store) --------------------------

def seed_run(database_url: str, students: list[str], entra_ids: dict[str, str], tokens: Path) -> None:
    """End every open grant, give each student an active grant (with their Entra id, or none), its membership
    in the bypass group (else the worker's reconcile would end it) and a session."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import text

    from app.adapters.store import Store
    from app.config import load_settings
    from app.domain.grants import GrantState
    from app.domain.sessions import SessionKind
    from app.wiring import build_directory, build_sessions

    settings = load_settings()
    store = Store(database_url)
    # A --baseline checkout's worker from before the stop-signal fix may have been killed holding the lease.
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM leases"))
    directory = build_directory(settings)
    now = datetime.now(timezone.utc)
    for grant in store.open_grants():
        store.move_grant(grant.id, GrantState.CANCELLED, ended_at=now, end_reason="bench")
    sessions = build_sessions(settings, store)
    lines = []
    for upn in students:
        user_dn = directory.find_user(upn).dn
        directory.add_member(settings.bypass_group_dn, user_dn)
        grant, _ = store.create_grant(upn=upn, user_dn=user_dn,
                                      entra_user_id=entra_ids.get(upn, ""), actor=upn, reason="bench",
                                      created_at=now, expires_at=now + timedelta(hours=4))
        store.move_grant(grant.id, GrantState.ACTIVE, activated_at=now, dc_confirmed=True)
        lines.append(sessions.start(kind=SessionKind.STUDENT, upn=upn, display_name=upn))
    tokens.write_text("\n".join(lines) + "\n")
    store.dispose()


def seed_in_child(checkout: Path, env: dict[str, str], students: list[str], entra_ids: dict[str, str],
                  tokens: Path) -> None:
    plan = tokens.with_suffix(".plan.json")
    plan.write_text(json.dumps({"students": students, "entra_ids": entra_ids}))
    subprocess.run([sys.executable, __file__, "--seed", str(plan), str(tokens)], check=True,
                   env={**env, "PROOFUP_BENCH_CHECKOUT": str(checkout), "PYTHONPATH": str(checkout)})


# -- one run of one variant ------------------------------------------------------------------------------------

def cpu_seconds(pids: list[int]) -> float:
    """Return the user + system CPU seconds these processes have used."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Checkout:
    """A checkout of the portal served by the benchmark, with its own database."""

    def __init__(self, name: str, path: Path, work: Path, env_file: Path):
        self.name, self.path = name, path
        self.database_url = f"sqlite:///{work}/{name}.sqlite3"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PROOFUP_", "PROMETHEUS_"))}
        self.env.update({"PROOFUP_ENV_FILE": str(env_file), "PROOFUP_DATABASE_URL": self.database_url,
                         "PYTHONPATH": str(path), "PROOFUP_RATE_LIMIT_STATUS": "1000000 per minute"})


def run_variant(stack, checkout: Checkout, variant: str, pool: "Pool", args, work: Path) -> dict:
    from bench.bench_status import Served, browser_cookies

    due = variant == "due"
    students = pool.pollers(args.students) if due else pool.first(args.students)
    entra_ids = {upn: stack.seed.user(upn).object_id for upn in students} if due else {}
    env = {**checkout.env, "PROOFUP_CHECK_INTERVAL_SECONDS": str(args.check),
           "PROOFUP_CONFIRM_INTERVAL_SECONDS": str(args.check)}
    token = secrets.token_hex(16)
    if variant == "metrics":
        env["PROOFUP_METRICS_TOKEN"] = token
    tokens = work / f"tokens-{checkout.name}-{variant}.txt"
    served = Served("app:create_wsgi_app()", env, work)  # starts (and upgrades) before the seeding writes
    worker_log = open(work / f"worker-{checkout.name}.log", "ab")
    worker = None
    try:
        seed_in_child(checkout.path, {**env, "PROOFUP_PUBLIC_URL": served.url}, students, entra_ids, tokens)
        jar = browser_cookies(served.url, tokens, work / f"jar-{checkout.name}-{variant}.txt")
        worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env={**env, "PROOFUP_PUBLIC_URL":
                                  served.url}, cwd=work, stdout=worker_log, stderr=subprocess.STDOUT)
        stop = threading.Event()
        helpers = []
        if due:  # registrations spread over the measured window, after the warm-up
            registrants = students[: args.registrants]
            pool.registered.update(registrants)
            helpers.append(threading.Thread(target=register_over_time, daemon=True, args=(
                stack, registrants, args.warmup + 0.5, args.seconds * 0.6, stop)))
        if variant == "metrics":
            helpers.append(threading.Thread(target=scrape, args=(served.url, token, args.scrape, stop), daemon=True))
        graph_seq = last_seq(stack)
        for helper in helpers:
            helper.start()
        pids = [served.process.pid, *served.workers()]
        cpu_before, worker_before = cpu_seconds(pids), cpu_seconds([worker.pid])
        measured = drive(served.url, jar, args.period, args.warmup, args.seconds)
        cpu_after, worker_after = cpu_seconds(pids), cpu_seconds([worker.pid])
        stop.set()
        graph = len(stack.graph_requests(since=graph_seq))
    finally:
        if worker is not None:
            stop_worker(worker)
        worker_log.close()
        served.stop()
    latencies = measured["latencies"]
    polls = len(latencies)
    # The CPU window includes the warm-up: count its polls too (the rate is constant).
    all_polls = polls * (args.warmup + args.seconds) / args.seconds
    return {"variant": variant, "checkout": checkout.name, "polls": polls, "rate": polls / args.seconds,
            "p50": percentile(latencies, 50) * 1000, "p95": percentile(latencies, 95) * 1000,
            "p99": percentile(latencies, 99) * 1000, "max": max(latencies) * 1000,
            "non200": sum(n for s, n in measured["statuses"].items() if s != "200"),
            "unanswered": measured["unanswered"],
            "cpu_ms_per_poll": (cpu_after - cpu_before) * 1000 / all_polls,
            "worker_cpu_s": worker_after - worker_before, "graph": graph, "final": measured["final"]}


def stop_worker(worker: subprocess.Popen) -> None:
    """Stop `proofup worker` as Ctrl-C does; kill it after 5 s (the next seeding frees its lease).

    This checkout's worker ends within its 5 s stop grace and gives its lease back; the kill is for a --baseline
    checkout from before that, whose worker ignored a SIGINT inherited as ignored and died on SIGTERM."""
    worker.send_signal(signal.SIGINT)
    try:
        worker.wait(timeout=5)
    except subprocess.TimeoutExpired:
        print("note: proofup worker did not end on SIGINT within 5 s: killed", flush=True)
        worker.kill()
        worker.wait()


def register_over_time(stack, upns: list[str], after: float, over: float, stop: threading.Event) -> None:
    """Register the Authenticator for each student, evenly spread over a window (as My Sign-Ins would)."""
    if stop.wait(after):
        return
    for upn in upns:
        stack.register_method(upn)
        if stop.wait(over / max(len(upns), 1)):
            return


def scrape(url: str, token: str, every: float, stop: threading.Event) -> None:
    """Scrape /metrics as Prometheus does, every `every` seconds, until stopped."""
    import requests

    while not stop.is_set():
        answer = requests.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        answer.raise_for_status()
        stop.wait(every)


def last_seq(stack) -> int:
    requests = stack.control("GET", "/requests")["requests"]
    return requests[-1]["seq"] if requests else 0


class Pool:
    """The seeded students: pollers for a `due` run are those who have not registered yet."""

    def __init__(self, upns: list[str]):
        self.upns = upns
        self.registered: set[str] = set()

    def first(self, n: int) -> list[str]:
        return self.upns[:n]

    def pollers(self, n: int) -> list[str]:
        fresh = [u for u in self.upns if u not in self.registered][:n]
        if len(fresh) < n:
            raise RuntimeError("not enough unregistered students seeded: raise the pool")
        return fresh


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--period", type=float, default=2.0, help="seconds between one student's polls")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per variant and round")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds driven before measuring")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--check", type=float, default=2.0,
                        help="PROOFUP_CHECK_INTERVAL_SECONDS and PROOFUP_CONFIRM_INTERVAL_SECONDS of every variant")
    parser.add_argument("--registrants", type=int, default=30, help="students who register during each due run")
    parser.add_argument("--scrape", type=float, default=15.0, help="seconds between two scrapes (metrics variant)")
    parser.add_argument("--variants", default="db,due,metrics")
    parser.add_argument("--baseline-variants", default="db,due", help="the variants the baseline checkout runs")
    parser.add_argument("--baseline", type=Path, help="another checkout of the portal, served in the same rounds")
    args = parser.parse_args()
    import logging

    from app.demo import DemoStack
    from bench.bench_orientation import make_seed

    logging.disable(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="bench-p99-"))
    variants, baseline_variants = args.variants.split(","), args.baseline_variants.split(",")
    due_runs = args.rounds * (variants.count("due") + (baseline_variants.count("due") if args.baseline else 0))
    seed = make_seed(work, args.students + args.registrants * due_runs)
    stack = DemoStack(work / "demo", seed=seed, worker=False, mail=False, method_delay_seconds=1.0,
                      check_interval_seconds=args.check).start()
    pool = Pool([u.upn for u in seed.users])
    checkouts = [Checkout("after", ROOT, work, stack.env_file)]
    if args.baseline:
        checkouts.append(Checkout("before", args.baseline.resolve(), work, stack.env_file))
    results: list[list[dict]] = []
    try:
        for round_no in range(args.rounds):
            results.append([])
            # Every other round in reverse order: no variant always runs first after a quiet spell.
            order = [(c, v) for c in checkouts for v in (variants if c.name == "after" else baseline_variants)]
            for checkout, variant in order if round_no % 2 == 0 else order[::-1]:
                row = run_variant(stack, checkout, variant, pool, args, work)
                row["load"] = os.getloadavg()[0]
                results[-1].append(row)
                print(f"round {round_no + 1} " + json.dumps({k: round(v, 2) if isinstance(v, float) else v
                                                              for k, v in row.items()}), flush=True)
    finally:
        stack.stop()
    report(results, checkouts, variants)
    return 0


def report(results: list[list[dict]], checkouts: list[Checkout], variants: list[str]) -> None:
    print("\n| checkout | variant | polls/s | p50 ms | p95 ms | p99 ms per round | max ms | non-200 | CPU ms/poll "
          "| worker CPU s | Graph requests | students done | unanswered | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    pick = {(r["checkout"], r["variant"]): [] for rnd in results for r in rnd}
    for rnd in results:
        for r in rnd:
            pick[(r["checkout"], r["variant"])].append(r)
    med = statistics.median
    for (checkout, variant), rows in pick.items():
        p99s = " / ".join(f"{r['p99']:.0f}" for r in rows)
        print(f"| {checkout} | {variant} | {med(r['rate'] for r in rows):.0f} | {med(r['p50'] for r in rows):.1f} "
              f"| {med(r['p95'] for r in rows):.1f} | {p99s} "
              f"| {max(r['max'] for r in rows):.0f} | {sum(r['non200'] for r in rows)} "
              f"| {med(r['cpu_ms_per_poll'] for r in rows):.2f} | {med(r['worker_cpu_s'] for r in rows):.1f} "
              f"| {med(r['graph'] for r in rows):.0f} | {med(r['final'] for r in rows):.0f} "
              f"| {sum(r['unanswered'] for r in rows)} | {med(r['load'] for r in rows):.1f} |")
    for checkout in checkouts:
        def per_round(variant: str, key: str) -> list[float]:
            out = []
            for rnd in results:
                rows = {r["variant"]: r for r in rnd if r["checkout"] == checkout.name}
                if variant in rows and "db" in rows:
                    out.append(rows[variant][key] / rows["db"][key])
            return out

        if "due" in variants:
            ratios = per_round("due", "p99")
            print(f"{checkout.name}: p99(due)/p99(db) per round {', '.join(f'{x:.2f}' for x in ratios)} -> median "
                  f"{med(ratios):.2f} (target at most {TARGET_RATIO:g})")
        if "metrics" in variants:
            cpu, p99 = per_round("metrics", "cpu_ms_per_poll"), per_round("metrics", "p99")
            print(f"{checkout.name}: metrics/db CPU per poll {', '.join(f'{x:.3f}' for x in cpu)} -> median "
                  f"{med(cpu):.3f}; p99 {', '.join(f'{x:.2f}' for x in p99)} -> median {med(p99):.2f} "
                  f"(target: cost under {METRICS_TARGET:.0%})")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--drive"]:
        url, jar, period, warmup, seconds = sys.argv[2:7]
        host_port = url.split("//", 1)[1]
        host, port = host_port.rsplit(":", 1)
        cookies = [line for line in Path(jar).read_text().splitlines() if line]
        print(json.dumps(asyncio.run(_drive(host, int(port), cookies, float(period), float(warmup), float(seconds)))))
    elif sys.argv[1:2] == ["--seed"]:
        plan = json.loads(Path(sys.argv[2]).read_text())
        seed_run(os.environ["PROOFUP_DATABASE_URL"], plan["students"], plan["entra_ids"], Path(sys.argv[3]))
    else:
        sys.exit(main())
