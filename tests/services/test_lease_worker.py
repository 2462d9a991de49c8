"""One worker at a time: the lease on SQLite and PostgreSQL, two worker processes racing, the worker loop."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.adapters.lease import Lease, default_holder
from app.adapters.store import Store
from app import worker as worker_module
from app.worker import WorkerStopped, lease_ttl_for, run_worker, stopping_on_signals
from tests.services.helpers import FakeClock
from tests.support import upgraded_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shared_store(database_url, clock):
    with upgraded_store(database_url, clock) as s:
        yield s


def test_lease_excludes_renews_and_lapses(shared_store, clock):
    a = Lease(shared_store, holder="host-a:1:x", ttl_seconds=30)
    b = Lease(shared_store, holder="host-b:1:y", ttl_seconds=30)
    assert a.acquire() and a.held
    assert not b.acquire() and not b.held
    clock.advance(29)
    assert a.renew()
    clock.advance(29)
    assert not b.acquire()  # renewed 29 s ago: still a's
    clock.advance(2)
    assert b.acquire()  # a stopped renewing (hung or dead on another host): b takes over
    assert not a.renew() and not a.held


def test_release_hands_over_at_once(shared_store):
    a, b = Lease(shared_store, ttl_seconds=600), Lease(shared_store, ttl_seconds=600)
    with a:
        assert a.acquire() and not b.acquire()
    assert b.acquire()


def test_restart_on_the_same_host_takes_over_from_its_dead_predecessor(shared_store):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    holder = default_holder().split(":")[0] + f":{int(dead.stdout)}:old"
    assert Lease(shared_store, holder=holder, ttl_seconds=600).acquire()
    successor = Lease(shared_store, ttl_seconds=600)
    assert successor.acquire()
    assert shared_store.lease_holder("worker")[0] == successor.holder
    # A live holder on this host (this very process, under another name) is never taken over.
    assert not Lease(shared_store, ttl_seconds=600).acquire()


class CountingSweeper:
    def __init__(self, fail_first: bool = False):
        self.cycles = 0
        self.fail_first = fail_first

        self.passes = 0
        self.timeline: list[str] = []

    def run_cycle(self):
        self.cycles += 1
        self.timeline.append("full")
        if self.fail_first and self.cycles == 1:
            raise RuntimeError("database locked")
        return self.cycles

    def run_confirm_pass(self):
        self.passes += 1
        self.timeline.append("confirm")


def test_once_runs_one_cycle_and_releases(shared_store):
    lease = Lease(shared_store, ttl_seconds=60)
    assert run_worker(CountingSweeper(), lease, once=True) == [1]
    assert shared_store.lease_holder("worker") is None


def test_once_does_nothing_while_another_worker_holds_the_lease(shared_store):
    assert Lease(shared_store, holder="elsewhere:1:z", ttl_seconds=60).acquire()
    sweeper = CountingSweeper()
    assert run_worker(sweeper, Lease(shared_store, ttl_seconds=60), once=True) == []
    assert sweeper.cycles == 0


def test_loop_survives_a_failed_cycle_and_stops_on_request(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'w.sqlite3'}")
    store.upgrade()
    stop = threading.Event()
    sweeper = CountingSweeper(fail_first=True)
    thread = threading.Thread(target=run_worker, args=(sweeper, Lease(store, ttl_seconds=5)),
                              kwargs={"interval": 0.05, "stop_event": stop})
    thread.start()
    deadline = time.monotonic() + 5
    while sweeper.cycles < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and sweeper.cycles >= 3
    assert store.lease_holder("worker") is None


class HangingSweeper(CountingSweeper):
    """A cycle that hangs (a Graph call that never answers) until it is interrupted."""

    def __init__(self, hang: float):
        super().__init__()
        self.hang = hang

    def run_cycle(self):
        super().run_cycle()
        time.sleep(self.hang)
        self.timeline.append("finished")
        return self.cycles


class CountingMail:
    def __init__(self):
        self.sends = 0

    def send_due(self):
        self.sends += 1


def _signal_soon(signum: int, after: float = 0.3) -> None:
    threading.Timer(after, os.kill, (os.getpid(), signum)).start()


def test_a_stop_signal_ends_the_current_step_then_frees_the_lease(shared_store):
    stop, sweeper, mail = threading.Event(), HangingSweeper(hang=1.0), CountingMail()
    before = signal.getsignal(signal.SIGTERM)
    _signal_soon(signal.SIGTERM)
    with stopping_on_signals(stop, grace=10):
        reports = run_worker(sweeper, Lease(shared_store, ttl_seconds=60), interval=0.05, stop_event=stop, mail=mail)
    assert reports == [1] and sweeper.timeline == ["full", "finished"]  # the step ran to its end, no new one began
    assert mail.sends == 0  # stopping: the outbox waits for the next worker
    assert shared_store.lease_holder("worker") is None
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored


def test_a_step_that_outlasts_the_grace_is_abandoned_and_the_lease_freed(shared_store):
    stop, sweeper = threading.Event(), HangingSweeper(hang=60.0)
    _signal_soon(signal.SIGINT)
    started = time.monotonic()
    with pytest.raises(WorkerStopped), stopping_on_signals(stop, grace=0.5):
        run_worker(sweeper, Lease(shared_store, ttl_seconds=60), interval=0.05, stop_event=stop)
    assert time.monotonic() - started < 30  # not the hang's 60 s (a correctness bound, not a speed target)
    assert sweeper.timeline == ["full"]
    assert shared_store.lease_holder("worker") is None


def _run_for(seconds: float, sweeper, lease: Lease, **kwargs) -> list:
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    return run_worker(sweeper, lease, stop_event=stop, **kwargs)


def test_a_long_running_worker_keeps_only_its_last_reports(shared_store, monkeypatch):
    """One report kept per cycle for ever was a leak in a worker that runs for months."""
    monkeypatch.setattr(worker_module, "REPORTS_KEPT", 3)
    stop = threading.Event()

    class StoppingSweeper(CountingSweeper):
        def run_cycle(self):
            if self.cycles == 5:
                stop.set()
            return super().run_cycle()

    reports = run_worker(StoppingSweeper(), Lease(shared_store), interval=0.01, stop_event=stop)
    assert reports == [4, 5, 6]  # of six cycles


def test_confirm_passes_run_between_full_cycles_and_renew_the_lease(shared_store):
    sweeper = CountingSweeper()
    renewals = []

    class CountingLease(Lease):
        def renew(self):
            renewals.append(time.monotonic())
            return super().renew()

    reports = _run_for(1.0, sweeper, CountingLease(shared_store, ttl_seconds=5), interval=0.4, confirm_interval=0.1)
    assert reports == list(range(1, sweeper.cycles + 1))  # only full cycles are reported
    assert 2 <= sweeper.cycles <= 4 and sweeper.passes >= 4
    assert sweeper.timeline[0] == "full"  # a (re)started worker expires and reconciles first
    # Then confirm passes until the next full cycle is due: never two full cycles in a row.
    assert "full,full" not in ",".join(sweeper.timeline)
    assert len(renewals) == sweeper.cycles + sweeper.passes  # the lease is renewed on every tick


def test_without_a_confirm_interval_only_full_cycles_run(shared_store):
    sweeper = CountingSweeper()
    _run_for(0.5, sweeper, Lease(shared_store, ttl_seconds=5), interval=0.1)
    assert sweeper.passes == 0 and sweeper.cycles >= 3


def test_bad_interval_is_refused(shared_store):
    with pytest.raises(ValueError):
        run_worker(CountingSweeper(), Lease(shared_store), interval=0)
    with pytest.raises(ValueError):
        run_worker(CountingSweeper(), Lease(shared_store), interval=30, confirm_interval=-1)
    assert lease_ttl_for(30) == 60 and lease_ttl_for(5) == 20


def _spawn(url: str, holder: str, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.services.race_worker", url, holder, str(seconds)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


@pytest.mark.slow
def test_two_worker_processes_race_and_never_overlap(database_url):
    store = Store(database_url)
    store.upgrade()
    # Each racer runs 10 s from its own start: on a busy machine the second one may start seconds after the
    # first, and the survivor must still be running when the holder dies.
    workers = {name: _spawn(database_url, name, 10.0) for name in ("racer-a", "racer-b")}
    time.sleep(2.0)
    holder = store.lease_holder("worker")[0]
    os.kill(workers[holder].pid, signal.SIGKILL)  # the running worker dies mid-flight
    killed_at = time.time()
    for proc in workers.values():
        proc.wait(30)
    events = store.audit_events(limit=1000, action="race.cycle")
    assert {e.detail["kind"] for e in events} == {"full", "confirm"}  # both kinds run under the one lease
    cycles = sorted((e.detail["start"], e.detail["end"], e.actor) for e in events)
    assert len(cycles) > 5
    for (_, end, who), (start, _, other) in zip(cycles, cycles[1:]):
        assert start >= end or who == other, f"{who} and {other} ran cycles at the same time"
    survivor = next(name for name in workers if name != holder)
    taken_over = [start for start, _, who in cycles if who == survivor and start > killed_at]
    # The lease (1 s) lapses, then the standby (polling every 0.1 s) takes over: well within 2 s.
    assert taken_over and taken_over[0] - killed_at < 2.0
    store.dispose()
