"""The dependency monitor: one round at a time in the background, at most one a period, never waited for."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from app.health import DependencyMonitor, DependencyStatus, _single


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 30, tzinfo=timezone.utc)

    def __call__(self):
        return self.now


def test_a_slow_round_is_never_waited_for_nor_run_twice():
    release, calls = threading.Event(), []

    def slow() -> list[DependencyStatus]:
        calls.append(1)
        release.wait(10)
        return [DependencyStatus("directory", "ldaps://dc1", False, "down")]

    clock = Clock()
    monitor = DependencyMonitor(lambda: [slow], period_seconds=10, clock=clock)
    reports = [monitor.report() for _ in range(20)]
    clock.now += timedelta(seconds=60)  # due again, but the first round still runs
    reports.append(monitor.report())
    assert all(r.status == "checking" and r.checking for r in reports)
    release.set()
    assert monitor.wait(10) and calls == [1]
    done = monitor.report()  # due since the clock moved: this one starts the second round
    assert done.status == "down" and done.checked_at == clock.now - timedelta(seconds=60)


def test_rounds_follow_the_period_and_each_probe_runs_once_a_round():
    calls: list[str] = []
    probes = [_single("sign-in", "https://idp", lambda: calls.append("sign-in") or "discovery"),
              _single("mail", "smtp", lambda: calls.append("mail") or "answered")]
    clock = Clock()
    monitor = DependencyMonitor(lambda: probes, period_seconds=10, clock=clock)
    for seconds in (0, 3, 9.9, 10, 12, 19.9, 20):
        clock.now = datetime(2026, 11, 30, tzinfo=timezone.utc) + timedelta(seconds=seconds)
        monitor.report()
        assert monitor.wait(10)
    assert sorted(calls) == ["mail"] * 3 + ["sign-in"] * 3  # rounds at 0, 10 and 20 s
    assert monitor.report().status == "ok"


def test_a_failing_check_is_a_result_and_the_others_still_report():
    def broken() -> str:
        raise ConnectionError("refused")

    monitor = DependencyMonitor(lambda: [_single("redis", "redis", broken), _single("mail", "smtp", lambda: "ok")],
                                period_seconds=10, clock=Clock())
    monitor.report()
    assert monitor.wait(10)
    statuses = {s.name: s for s in monitor.report().statuses}
    assert statuses["redis"] == DependencyStatus("redis", "redis", False, "ConnectionError: refused")
    assert statuses["mail"].ok


def test_checks_that_cannot_even_be_built_say_so_and_end_the_round():
    def cannot_build():
        raise RuntimeError("bad setting")

    monitor = DependencyMonitor(cannot_build, period_seconds=10, clock=Clock())
    monitor.report()
    assert monitor.wait(10)
    report = monitor.report()
    assert report.status == "down" and not report.checking and report.statuses[0].name == "checks"


def test_a_forked_worker_forgets_its_parents_results():
    monitor = DependencyMonitor(lambda: [_single("mail", "smtp", lambda: "answered")], period_seconds=10,
                                clock=Clock())
    monitor.report()
    assert monitor.wait(10) and monitor.report().status == "ok"
    monitor._after_fork()
    assert monitor.report().status == "checking"
