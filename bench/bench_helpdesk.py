#!/usr/bin/env python3
"""Benchmark: the service desk console's cost in Graph requests and time, against the demo stack.

Usage: .venv/bin/python bench/bench_helpdesk.py [--grants 300] [--repeat 5]

Starts the demo stack in-process (simulator over TLS, embedded directory, portal over HTTP), opens
`--grants` active grants (rows in the store, members of the bypass group), signs a desk member in
through the simulated AD FS (password and one-time code, real MSAL), then measures over HTTP:
the "now" page (target: no Graph request), a look-up by name (no Graph request) and the student's
file (target: at most one Graph round trip). Graph requests are counted in the simulator's own log
(a $batch counts once). Prints a Markdown section for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from app.demo import DemoStack, adfs_form_post  # noqa: E402
from app.domain.actors import WORKER  # noqa: E402
from app.domain.grants import GrantState, utc_now  # noqa: E402

DESK = "hedy.lamarr@uni.test"
STUDENT = "ada.lovelace@uni.test"


def open_grants(stack: DemoStack, count: int) -> None:
    """Open count active grants for made-up students (store rows and bypass memberships)."""
    now = utc_now()
    base = f"OU=Bench,{stack.seed.base_dn}"
    for i in range(count):
        dn = f"CN=Bench Student {i:04d},{base}"
        grant, _ = stack.services.store.create_grant(
            upn=f"bench{i:04d}@{stack.seed.upn_suffix}", user_dn=dn, entra_user_id="", actor=DESK,
            reason=f"bench ticket {i}", created_at=now, expires_at=now + timedelta(minutes=30))
        stack.services.store.move_grant(grant.id, GrantState.ACTIVE, activated_at=now, dc_confirmed=True)
        stack.directory.add_member(stack.seed.bypass_group_dn, dn)
    stack.services.store.audit(WORKER, "bench.ready", grants=count)


def staff_browser(stack: DemoStack) -> requests.Session:
    """Sign the desk member in (password and one-time code at the simulated AD FS) and return the browser."""
    browser = requests.Session()
    start = browser.get(stack.portal_url + "/helpdesk/sign-in", allow_redirects=False)
    user = stack.seed.user(DESK)
    posted = adfs_form_post(start.headers["Location"], DESK, user.password, stack.settings.ca_bundle,
                            code=user.staff_mfa)
    answer = browser.post(posted.action, data=posted.fields, allow_redirects=False)
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/helpdesk/now"), answer.status_code
    return browser


def measure(stack: DemoStack, browser: requests.Session, path: str, repeat: int) -> tuple[float, list[int]]:
    """GET path repeat times; return the median seconds and the Graph requests each GET made."""
    times, graph = [], []
    for _ in range(repeat):
        before = len(stack.graph_requests())
        started = time.perf_counter()
        response = browser.get(stack.portal_url + path)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (path, response.status_code)
        graph.append(len(stack.graph_requests()) - before)
    return statistics.median(times), graph


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grants", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state, DemoStack(state, worker=False, mail=False,
                                                           method_delay_seconds=0.0) as stack:
        open_grants(stack, args.grants)
        browser = staff_browser(stack)
        now_s, now_graph = measure(stack, browser, "/helpdesk/now", args.repeat)
        page = browser.get(stack.portal_url + "/helpdesk/now").text
        assert page.count("bench ticket") == args.grants, "the now page must list every open grant"
        look_s, look_graph = measure(stack, browser, "/helpdesk/look-up?q=Lovelace", args.repeat)
        file_s, file_graph = measure(stack, browser, f"/helpdesk/student/{STUDENT}", args.repeat)
    print(f"""## Service desk console

Script: `bench/bench_helpdesk.py` (`.venv/bin/python bench/bench_helpdesk.py --grants {args.grants} --repeat {args.repeat}`).
Machine: {platform.machine()}, Python {platform.python_version()}; the demo stack in-process (simulator over TLS,
embedded directory, portal on Werkzeug's threaded server over HTTP, SQLite). Graph requests are counted in the
simulator's own log; a desk member signed in through the simulated AD FS with the one-time code.

| measure | result | target |
|---|---|---|
| Graph requests for the "now" page with {args.grants} open grants (each of {args.repeat} loads) | {now_graph} | 0 |
| "now" page, median time | {now_s * 1000:.0f} ms | |
| Graph requests for a look-up by name | {look_graph} | 0 |
| look-up, median time | {look_s * 1000:.0f} ms | |
| Graph round trips for the student's file (diagnosis and evidence) | {file_graph} | at most 1 |
| student's file, median time | {file_s * 1000:.0f} ms | |
""")
    ok = all(n == 0 for n in now_graph + look_graph) and all(n <= 1 for n in file_graph)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
