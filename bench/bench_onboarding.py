#!/usr/bin/env python3
"""Benchmark the portal's Graph traffic: round trips per diagnosis, requests per completed onboarding.

Runs the demo stack (simulator + embedded directory + portal over HTTP) in-process and counts Graph
requests in the simulator's own request log (a $batch counts once; token requests are not Graph).

Onboarding scenario (issue 3): three open tabs poll the portal every 2 s while the student takes
60 s to register. Time is compressed by SCALE: every duration (poll period, registration time,
the simulator's method delay, the check and confirm intervals, the worker interval) is divided by it,
so the ratios are the same as in real time. Polls only read the database; the background worker does
every methods check (a confirm pass every PROOFUP_CONFIRM_INTERVAL_SECONDS). Two variants side by
side in one run:
  tabs      three tabs polling, as the guide page does
  closed    the student closed the tab: nobody polls, the worker alone releases

Usage: .venv/bin/python bench/bench_onboarding.py [--scale 10] [--runs 3]
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.demo import DemoStack  # noqa: E402

REAL = dict(poll_seconds=2.0, registration_seconds=60.0, method_delay_seconds=5.0, check_interval_seconds=5.0,
            confirm_interval_seconds=5.0, worker_interval_seconds=30.0)
TABS = 3
DIAGNOSED = ("ada.lovelace@uni.test", "alan.turing@uni.test", "grace.hopper@uni.test",
             "edsger.dijkstra@uni.test", "barbara.liskov@uni.test", "donald.knuth@uni.test",
             "margaret.hamilton@uni.test")
TARGET_DIAGNOSIS = 1
TARGET_ONBOARDING = 6


def csrf_token(html: str) -> str:
    marker = 'name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


def diagnosis_round_trips(stack: DemoStack) -> list[int]:
    """Sign in each student (the portal diagnoses at once) and count the Graph requests each cost."""
    counts = []
    for upn in DIAGNOSED:
        before = len(stack.graph_requests())
        stack.signed_in_session(upn)
        counts.append(len(stack.graph_requests()) - before)
    return counts


def onboarding_requests(stack: DemoStack, upn: str, scale: float, tabs: int) -> tuple[int, float]:
    """Unlock, poll from `tabs` tabs, register after 60 s (scaled); return (Graph requests, seconds to done)."""
    poll = REAL["poll_seconds"] / scale
    before = len(stack.graph_requests())
    tab, page = stack.signed_in_session(upn)  # the diagnosis: one round trip, counted too
    tab.post(stack.portal_url + "/unlock", data={"csrf_token": csrf_token(page)}).raise_for_status()
    done = threading.Event()

    def poller(cookies) -> None:
        from app.adapters.http import make_session

        session = make_session(None)
        session.cookies.update(cookies)
        while not done.is_set():
            if session.get(stack.portal_url + "/status").json()["phase"] == "done":
                done.set()
            done.wait(poll)

    def released() -> None:  # the tab is closed: watch the grant itself
        while not done.is_set():
            if stack.services.store.open_grant_for(upn) is None:
                done.set()
            done.wait(poll / 10)

    threads = [threading.Thread(target=poller, args=(tab.cookies,)) for _ in range(tabs)]
    threads += [] if tabs else [threading.Thread(target=released)]
    for thread in threads:
        thread.start()
    time.sleep(REAL["registration_seconds"] / scale)
    stack.register_method(upn)
    registered = time.monotonic()
    finished = done.wait(timeout=600 / scale)
    latency = (time.monotonic() - registered) * scale
    done.set()
    for thread in threads:
        thread.join()
    if not finished:
        raise RuntimeError(f"{upn}: the portal never said done")
    return len(stack.graph_requests()) - before, latency


def run_variant(name: str, scale: float, runs: int, *, tabs: int) -> dict:
    students = ("ada.lovelace@uni.test", "alan.turing@uni.test", "edsger.dijkstra@uni.test")[:runs]
    with tempfile.TemporaryDirectory(prefix="proofup-bench-") as state:
        stack = DemoStack(Path(state), method_delay_seconds=REAL["method_delay_seconds"] / scale,
                          check_interval_seconds=REAL["check_interval_seconds"] / scale,
                          confirm_interval_seconds=REAL["confirm_interval_seconds"] / scale,
                          worker_interval_seconds=REAL["worker_interval_seconds"] / scale,
                          replication_wait_seconds=0.5)
        stack.start()
        try:
            diagnosis = diagnosis_round_trips(stack) if tabs else []
            results = [onboarding_requests(stack, upn, scale, tabs) for upn in students]
        finally:
            stack.stop()
    return {"name": name, "diagnosis": diagnosis, "requests": [r for r, _ in results],
            "latency": [lat for _, lat in results]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=10.0, help="time compression factor (default 10)")
    parser.add_argument("--runs", type=int, default=3, choices=(1, 2, 3), help="onboardings per variant")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log lines for every poll
    variants = [run_variant("tabs", args.scale, args.runs, tabs=TABS),
                run_variant("closed", args.scale, args.runs, tabs=0)]
    diagnosis = variants[0]["diagnosis"]
    print(f"scale 1:{args.scale:g}; {TABS} tabs polling every {REAL['poll_seconds']:g} s; registration after "
          f"{REAL['registration_seconds']:g} s; method delay {REAL['method_delay_seconds']:g} s; check interval "
          f"{REAL['check_interval_seconds']:g} s; confirm passes every {REAL['confirm_interval_seconds']:g} s "
          "(all in real-time terms)")
    print(f"Graph round trips per diagnosis: {diagnosis} -> max {max(diagnosis)} "
          f"(ratio to target {max(diagnosis) / TARGET_DIAGNOSIS:.2f})")
    polls = TABS * REAL["registration_seconds"] / REAL["poll_seconds"]
    print(f"Uncoalesced baseline: every poll asks Graph = {polls:.0f} requests + 1 diagnosis")
    for v in variants:
        worst = max(v["requests"])
        print(f"{v['name']:8} Graph requests per onboarding {v['requests']} -> max {worst} "
              f"(ratio to target {worst / TARGET_ONBOARDING:.2f}); seconds from registration to done "
              f"{[round(x, 1) for x in v['latency']]} (median {statistics.median(v['latency']):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
