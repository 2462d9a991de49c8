#!/usr/bin/env python3
"""Benchmark GET /status under `proofup serve`'s gunicorn set-up against a bare Flask view, side by side.

Every variant runs under the same gunicorn command line as `proofup serve` (app.cli.gunicorn_argv:
preloaded, gthread, 2 workers x 4 threads, the same hooks) on loopback, driven by wrk (Debian's
package) with 16 connections, each request carrying the session cookie of one of --students signed-in
students who all have an open grant (no Entra id, so no poll ever asks Graph: the database-only poll).

  bare             a Flask app with one JSON view of the same shape
  portal-sqlite    the portal on a SQLite file
  portal-postgres  the portal on PostgreSQL (Debian's server, throw-away cluster)
  portal-nofreeze  the portal on SQLite without gc.freeze() before the fork (memory only)
  portal-sqlite-crowded  the portal on SQLite with --open-grants other students' open grants beside
                   the 300 (target: as fast as portal-sqlite, the open-grant reads stay index lookups)

Measured: requests per second (the ratio to bare is the target: at least 0.5x), latency percentiles,
non-2xx answers, and per worker after the run RSS and USS (private memory) from /proc/PID/smaps_rollup.
Then the limiter: throughput with the same students after --distinct other students each made one
request in the same processes, against before (target: at least 0.9x).

Usage: .venv/bin/python bench/bench_status.py [--students 300] [--seconds 10] [--distinct 20000]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.adapters.store import Store  # noqa: E402
from app.cli import gunicorn_argv  # noqa: E402
from app.domain.grants import GrantState  # noqa: E402
from app.seed import load_seed  # noqa: E402
from app.web import SESSION_COOKIE  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdef"
FLASK_COOKIE = "proofup_session"  # the portal's signed cookie (language choice, the set-up time's end)
WRK_SCRIPT = """
local made = 0
setup = function(thread)
  thread:set("id", made)
  made = made + 1
end
local cookies = {}
init = function(args)
  for line in io.lines(args[1]) do cookies[#cookies + 1] = line end
  -- the two threads start half the list apart: together they go through every cookie in turn
  counter = id * math.floor(#cookies / 2)
end
request = function()
  counter = counter % #cookies + 1
  return wrk.format("GET", "/status", {["Cookie"] = cookies[counter]})
end
"""

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def portal_env(database_url: str) -> dict[str, str]:
    seed = load_seed()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROOFUP_", "PROMETHEUS_"))}
    env.update({
        "PYTHONPATH": str(ROOT), "PROOFUP_SECRET_KEY": SECRET, "PROOFUP_AUTHORITY": "https://idp.bench/adfs",
        "PROOFUP_CLIENT_ID": "portal", "PROOFUP_DATABASE_URL": database_url,
        "PROOFUP_BYPASS_GROUP_DN": seed.bypass_group_dn, "PROOFUP_REQUIRED_GROUP_DN": seed.required_group_dn,
        # The limit stays on (its cost is part of the poll) but high enough never to refuse the benchmark.
        "PROOFUP_RATE_LIMIT_STATUS": "1000000 per minute",
    })
    return env


def open_sessions(url: str, students: list[str], cookies: Path, *, grants: bool) -> Path:
    """Sign each student in (a server-side session, as after a real sign-in) and, if asked, give them an active
    grant without an Entra id (the poll never asks Graph); write their session tokens, one a line."""
    from app.config import load_settings
    from app.domain.sessions import SessionKind
    from app.wiring import build_sessions

    store = Store(url)
    store.upgrade()
    sessions = build_sessions(load_settings(portal_env(url)), store)
    now = datetime.now(timezone.utc)
    tokens = []
    for upn in students:
        if grants:
            grant, _ = store.create_grant(upn=upn, user_dn=f"CN={upn},OU=Students,DC=uni,DC=test", entra_user_id="",
                                          actor=upn, reason="bench", created_at=now,
                                          expires_at=now + timedelta(hours=4))
            store.move_grant(grant.id, GrantState.ACTIVE, activated_at=now, dc_confirmed=True)
        tokens.append(sessions.start(kind=SessionKind.STUDENT, upn=upn, display_name=upn))
    cookies.write_text("\n".join(tokens) + "\n")
    store.dispose()
    return cookies


def add_open_grants(url: str, count: int) -> None:
    """Give `count` other students an open grant, in one transaction (as many as an orientation week's)."""
    from app.adapters.store.grants import GrantRow
    from app.domain.directory import dn_key

    store = Store(url)
    now = datetime.now(timezone.utc)
    rows = []
    for i in range(count):
        dn = f"CN=crowd{i:06d},OU=Students,DC=uni,DC=test"
        rows.append(dict(upn=f"crowd{i:06d}@uni.test", user_dn=dn, user_dn_key=dn_key(dn), entra_user_id="",
                         state=GrantState.ACTIVE.value, actor="bench", reason="bench", created_at=now,
                         expires_at=now + timedelta(hours=4), activated_at=now, dc_confirmed=True))
    with store._tx(write=True) as session:
        session.execute(GrantRow.__table__.insert(), rows)
    store.dispose()


def browser_cookies(url: str, tokens: Path, jar: Path) -> Path:
    """Poll once as each student's browser and write the Cookie header it then sends, one a line.

    A browser sends back the portal's signed Flask cookie (proofup_session) that the first poll set; wrk keeps
    no cookies, so without this every poll would look like a new browser's and be answered with a fresh one.
    """
    lines = []
    for token in tokens.read_text().split():
        answer = requests.get(url + "/status", cookies={SESSION_COOKIE: token}, allow_redirects=False, timeout=10)
        if answer.status_code != 200 or answer.json().get("phase") != "waiting":
            raise RuntimeError(f"/status answered {answer.status_code}: {answer.text[:200]}")
        flask_cookie = answer.cookies.get(FLASK_COOKIE)
        lines.append(f"{SESSION_COOKIE}={token}" + (f"; {FLASK_COOKIE}={flask_cookie}" if flask_cookie else ""))
    jar.write_text("\n".join(lines) + "\n")
    return jar


class Served:
    """One gunicorn, started as `proofup serve` starts it."""

    def __init__(self, app_spec: str, env: dict[str, str], workdir: Path, *, config: str | None = None):
        self.port = free_port()
        metrics_dir = tempfile.mkdtemp(prefix="bench-metrics-", dir=workdir)
        argv = gunicorn_argv("127.0.0.1", self.port, workers=2, threads=4, app=app_spec,
                             **({"config": config} if config else {}))
        self.log = open(workdir / f"gunicorn-{self.port}.log", "wb")
        env = {**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir, "PROOFUP_PUBLIC_URL": self.url}
        self.process = subprocess.Popen(argv, env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not start; see {self.log.name}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def memory(self) -> list[dict[str, float]]:
        """Return RSS, PSS and USS (MiB) of each worker."""
        return [memory_of(pid) for pid in self.workers()]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def memory_of(pid: int) -> dict[str, float]:
    """Return RSS, PSS and USS (MiB) of one process (bench/bench_memory.py reads `proofup worker` with it too)."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) / 1024
    return {"rss": fields["Rss"], "pss": fields["Pss"], "uss": fields["Private_Clean"] + fields["Private_Dirty"]}


def wrk(url: str, cookies: Path, script: Path, seconds: int) -> dict[str, float]:
    """Run wrk for `seconds`; return requests/s, non-2xx count and latency percentiles (ms)."""
    run = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(script), url, "--",
                          str(cookies)], capture_output=True, text=True, check=True)
    text = run.stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
              "non2xx": int((re.search(r"Non-2xx or 3xx responses: (\d+)", text) or [0, 0])[1]),
              "errors": sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))}
    for pct in ("50", "99"):
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()
        result[f"p{pct}_ms"] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--distinct", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3, help="alternate the variants this many times")
    parser.add_argument("--variants", default="bare,portal-sqlite,portal-postgres,portal-nofreeze",
                        help="comma-separated (none: only the limiter run); add baseline-sqlite with --baseline")
    parser.add_argument("--baseline", type=Path, help="another checkout of the portal (e.g. a worktree of main), "
                        "served side by side as baseline-sqlite: before and after in one run")
    parser.add_argument("--no-limiter", action="store_true", help="skip the run with --distinct other students")
    parser.add_argument("--open-grants", type=int, default=30000,
                        help="other students' open grants in the portal-sqlite-crowded variant's database")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.postgres import PostgresServer, _pg_bindir

    work = Path(tempfile.mkdtemp(prefix="bench-status-"))
    script = work / "status.lua"
    script.write_text(WRK_SCRIPT)
    students = [f"student{i:05d}@uni.test" for i in range(args.students)]
    sqlite_url = f"sqlite:///{work}/portal.sqlite3"
    tokens = open_sessions(sqlite_url, students, work / "tokens.txt", grants=True)
    names = [n for n in args.variants.split(",") if n != "none"] + (["baseline-sqlite"] if args.baseline else [])
    pg = PostgresServer(_pg_bindir()) if "portal-postgres" in names else None
    if pg:
        pg.start()
    try:
        variants = {
            "bare": ("bench.status_apps:bare()", portal_env(sqlite_url), None, tokens),
            "portal-sqlite": ("bench.status_apps:portal()", portal_env(sqlite_url), None, tokens),
            "portal-nofreeze": ("bench.status_apps:portal()", portal_env(sqlite_url), "python:bench.nofreeze_hooks",
                                tokens),
        }
        if "portal-sqlite-crowded" in names:
            crowded_url = f"sqlite:///{work}/crowded.sqlite3"
            crowded_tokens = open_sessions(crowded_url, students, work / "tokens-crowded.txt", grants=True)
            add_open_grants(crowded_url, args.open_grants)
            variants["portal-sqlite-crowded"] = ("bench.status_apps:portal()", portal_env(crowded_url), None,
                                                 crowded_tokens)
        if pg:
            pg_url = pg.create_database("bench")
            pg_tokens = open_sessions(pg_url, students, work / "tokens-pg.txt", grants=True)
            variants["portal-postgres"] = ("bench.status_apps:portal()", portal_env(pg_url), None, pg_tokens)
        if args.baseline:
            # Its own database, made by its own code: a newer schema is one the older portal refuses to start on.
            baseline_url = f"sqlite:///{work}/baseline.sqlite3"
            baseline_env = {**portal_env(baseline_url), "PYTHONPATH": str(args.baseline.resolve())}
            baseline_tokens = work / "tokens-baseline.txt"
            subprocess.run([sys.executable, "-c", "import sys; from bench.bench_status import open_sessions; "
                            "open_sessions(sys.argv[1], sys.argv[2].split(','), __import__('pathlib').Path("
                            "sys.argv[3]), grants=True)", baseline_url, ",".join(students), str(baseline_tokens)],
                           env=baseline_env, cwd=args.baseline.resolve(), check=True)
            variants["baseline-sqlite"] = ("bench.status_apps:portal()", baseline_env, None, baseline_tokens)
        rounds: list[dict[str, dict]] = []
        for _ in range(args.rounds):
            rounds.append({})
            for name in names:
                spec, env, config, round_tokens = variants[name]
                served = Served(spec, env, work, config=config)
                try:
                    jar = browser_cookies(served.url, round_tokens, work / f"jar-{name}.txt")
                    wrk(served.url, jar, script, 2)  # warm-up: every worker has served
                    measured = wrk(served.url, jar, script, args.seconds)
                    measured["memory"] = served.memory()
                finally:
                    served.stop()
                rounds[-1][name] = measured
                print(name, json.dumps(measured), flush=True)

        limiter = None
        if not args.no_limiter:
            # The limiter: the same processes after `distinct` other students each polled once.
            served = Served("bench.status_apps:portal()", portal_env(sqlite_url), work)
            try:
                jar = browser_cookies(served.url, tokens, work / "jar-limiter.txt")
                wrk(served.url, jar, script, 2)
                fresh = wrk(served.url, jar, script, args.seconds)
                others = open_sessions(sqlite_url, [f"other{i:06d}@uni.test" for i in range(args.distinct)],
                                       work / "others.txt", grants=False)
                others_jar = work / "others-jar.txt"
                others_jar.write_text("".join(f"{SESSION_COOKIE}={t}\n" for t in others.read_text().split()))
                # Every other student polls at least once: wrk goes through the list in turn, for long enough
                # at the rate new students are served (a first poll costs more than a returning one).
                probe = wrk(served.url, others_jar, script, 5)
                seconds = max(5, round(1.3 * args.distinct / max(probe["rps"], 1)))
                others_run = wrk(served.url, others_jar, script, seconds)
                if others_run["rps"] * seconds < args.distinct:
                    print(f"note: only {others_run['rps'] * seconds:.0f} of {args.distinct} other students polled")
                after = wrk(served.url, jar, script, args.seconds)
                limiter = {"fresh": fresh, "after": after, "memory_after": served.memory()}
            finally:
                served.stop()
    finally:
        if pg:
            pg.stop()

    print("\nvariant            req/s (median)  x bare per round -> median   p50 ms   p99 ms  non-2xx  "
          "RSS MiB/worker  USS MiB/worker")
    for name in names:
        runs = [r[name] for r in rounds]
        ratios = [r[name]["rps"] / r["bare"]["rps"] for r in rounds] if "bare" in names else []
        last = runs[-1]
        rss = "/".join(f"{m['rss']:.0f}" for m in last["memory"])
        uss = "/".join(f"{m['uss']:.0f}" for m in last["memory"])
        shown = ", ".join(f"{x:.2f}" for x in ratios)
        print(f"{name:16} {statistics.median(r['rps'] for r in runs):8.0f}  {shown:>22} -> "
              f"{statistics.median(ratios) if ratios else 0:.2f}  {statistics.median(r['p50_ms'] for r in runs):8.1f} "
              f"{statistics.median(r['p99_ms'] for r in runs):8.1f} {sum(r['non2xx'] + r['errors'] for r in runs):8d}"
              f"  {rss:>14}  {uss:>14}")
    if "portal-sqlite-crowded" in names and "portal-sqlite" in names:
        flat = [r["portal-sqlite-crowded"]["rps"] / r["portal-sqlite"]["rps"] for r in rounds]
        print(f"portal-sqlite-crowded ({args.open_grants} more open grants) / portal-sqlite per round: "
              + ", ".join(f"{x:.2f}" for x in flat))
    if "baseline-sqlite" in names and "portal-sqlite" in names:
        gains = [r["portal-sqlite"]["rps"] / r["baseline-sqlite"]["rps"] for r in rounds]
        print("portal-sqlite / baseline-sqlite per round: " + ", ".join(f"{x:.2f}" for x in gains))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if limiter is None:
        shutil.rmtree(work, ignore_errors=True)
        return 0
    ratio = limiter["after"]["rps"] / limiter["fresh"]["rps"]
    rss_after = "/".join(f"{m['rss']:.0f}" for m in limiter["memory_after"])
    print(f"\nlimiter: {limiter['fresh']['rps']:.0f} req/s fresh, {limiter['after']['rps']:.0f} after "
          f"{args.distinct} other students ({ratio:.2f}x); RSS afterwards {rss_after} MiB")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
