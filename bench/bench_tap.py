#!/usr/bin/env python3
"""Benchmark the two remedies side by side: Graph requests and seconds per onboarding, bypass against a pass.

Runs the demo stack in-process with PROOFUP_REMEDY=both (simulator over TLS, embedded directory, portal on
Werkzeug) and counts Graph requests in the simulator's own request log (a $batch counts once). One
onboarding: sign in (diagnosis), start the remedy (POST /unlock or POST /tap), the student registers the
Authenticator (the simulator shows it at once), "check now" until done (every check ends in one Graph
request at most), then the pass is deleted. The pass journey also signs in to My Sign-Ins with the pass
over HTTP, and the requests that reached AD FS during that sign-in are counted (the bypass's sign-in
at My Sign-Ins goes through AD FS by design, so it is not run here).

Usage: .venv/bin/python bench/bench_tap.py [--runs 3]
"""
from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.adapters.http import make_session  # noqa: E402
from app.demo import DemoStack, FormFields, adfs_form_post  # noqa: E402

STUDENTS = ("ada.lovelace@uni.test", "alan.turing@uni.test", "grace.hopper@uni.test")


def csrf(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def graph_requests(entries: list[dict]) -> int:
    return sum(1 for e in entries if e["path"].startswith("/v1.0") and not e["batch_part"])


def onboarding(stack: DemoStack, upn: str, remedy: str) -> dict[str, float]:
    """Run one onboarding with a remedy; return its Graph requests, AD FS hits at My Sign-Ins and seconds."""
    log = lambda: stack.control("GET", "/requests")["requests"]  # noqa: E731
    since = max([0, *(e["seq"] for e in log())])
    client = stack.app.test_client()
    posted = adfs_form_post(client.get("/sign-in").headers["Location"], upn, stack.seed.user(upn).password,
                            stack.settings.ca_bundle)
    token = csrf(client.post("/auth/callback", data=posted.fields, follow_redirects=True).get_data(as_text=True))
    started = time.perf_counter()
    answer = client.post(f"/{remedy}", data={"csrf_token": token})
    start_seconds = time.perf_counter() - started
    adfs_hits = 0
    if remedy == "tap":
        shown = answer.get_data(as_text=True)
        code = re.search(r'id="tap-code"[^>]*>([^<]+)<', shown).group(1).strip().replace("&amp;", "&")
        before = max(e["seq"] for e in log())
        browser = make_session(stack.settings.ca_bundle)
        link = re.search(r'id="mysignins" href="([^"]+)"', shown).group(1).replace("&amp;", "&")
        asked = browser.get(link)
        form = FormFields(asked.text)
        browser.post(urljoin(asked.url, form.action), data={**form.fields, "tap": code})
        adfs_hits = sum(1 for e in log() if e["seq"] > before and e["path"].startswith("/adfs"))
    stack.register_method(upn, "microsoftAuthenticator")
    status = {}
    while status.get("phase") != "done":
        time.sleep(0.3)
        status = client.post("/status/check", headers={"X-CSRFToken": token}).get_json()
    total = time.perf_counter() - started
    after = [e for e in log() if e["seq"] > since]
    return {"graph": graph_requests(after), "adfs_at_mysignins": adfs_hits, "start_s": start_seconds,
            "total_s": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    results: dict[str, list[dict[str, float]]] = {"unlock": [], "tap": []}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as state:
            # The worker does the methods checks that end each onboarding ("check now" only asks it to).
            stack = DemoStack(state, mail=False, method_delay_seconds=0.0, check_interval_seconds=0.5,
                              confirm_interval_seconds=0.5, remedy="both", max_unlocks=100).start()
            try:
                # Alternate which remedy goes first, so neither always pays for a cold start.
                order = ("unlock", "tap") if run % 2 == 0 else ("tap", "unlock")
                for remedy, upn in zip(order, STUDENTS):
                    results[remedy].append(onboarding(stack, upn, remedy))
            finally:
                stack.stop()
    print("| measure | bypass (POST /unlock) | pass (POST /tap) |")
    print("|---|---|---|")
    for key, label in (("graph", "Graph requests per onboarding"),
                       ("adfs_at_mysignins", "requests reaching AD FS during the My Sign-Ins sign-in"),
                       ("start_s", "seconds for the remedy to start (median)"),
                       ("total_s", "seconds from the click to done (median)")):
        cells = []
        for remedy in ("unlock", "tap"):
            values = [r[key] for r in results[remedy]]
            if key.endswith("_s"):
                cells.append(f"{statistics.median(values):.2f} ({min(values):.2f} to {max(values):.2f})")
            else:
                cells.append(", ".join(str(int(v)) for v in values))
        if key == "adfs_at_mysignins":
            cells[0] = "not run (through AD FS by design)"
        print(f"| {label} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
