"""The background worker: hold the lease, run a full cycle every interval and confirm passes between, send the
outbox's mail every tick, stop cleanly."""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Iterator

from app.adapters.lease import Lease
from app.services.retention import Retention
from app.services.sweeper import CycleReport, Sweeper

log = logging.getLogger(__name__)
DEFAULT_INTERVAL_SECONDS = 30.0
# The reports run_worker returns: the last this many full cycles. A worker runs for months: one kept per cycle
# forever grew its memory by about 2,900 reports a day at the default interval.
REPORTS_KEPT = 100
# After SIGINT or SIGTERM the current step may run this long before it is abandoned. Abandoning is safe (every grant
# transition writes its intent first and is compare-and-set: the next worker finishes it); systemd waits 30 s.
STOP_GRACE_SECONDS = 5.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class WorkerStopped(KeyboardInterrupt):
    """A stop signal came and the current step did not end within its grace (or a second signal came)."""


def lease_ttl_for(interval: float) -> float:
    """Return a lease time-to-live that outlives one interval plus a slow cycle, yet hands over soon."""
    return max(2 * interval, interval + 15.0)


def run_worker(sweeper: Sweeper, lease: Lease, *, interval: float = DEFAULT_INTERVAL_SECONDS, once: bool = False,
               stop_event: threading.Event | None = None, confirm_interval: float | None = None,
               mail=None, retention: Retention | None = None, keep_lease: bool = True,
               batches=None, scans=None) -> list[CycleReport]:
    """Run sweeper cycles while holding the lease; one cycle with once=True. Return the last REPORTS_KEPT reports.

    Every interval a full cycle runs; with a shorter confirm_interval, confirmation passes (bulk method
    checks only) run between full cycles, so a released student does not wait for the next full cycle.
    A worker that does not hold the lease waits and tries again each tick (a standby). With once=True
    and the lease held elsewhere, nothing runs and the list is empty. Only full cycles are reported.
    With `batches` (a BatchService), every tick also checks uploaded batches and queues due reminders.
    With `scans` (ScanJobs), every tick also predicts the next chunk of each desk scan (app/services/jobs.py).
    With `mail` (an OutboxSender), every tick also sends the outbox's due mail, after the grants' work.
    After each full cycle, retention (if given) deletes one bounded chunk of old records.
    With keep_lease=False (the demo's worker) the lease is given back after every cycle or pass.
    """
    if interval <= 0 or (confirm_interval is not None and confirm_interval <= 0):
        raise ValueError("the worker intervals must be positive")
    tick = min(interval, confirm_interval or interval)
    stop_event = stop_event or threading.Event()
    reports: deque[CycleReport] = deque(maxlen=REPORTS_KEPT)
    next_full = time.monotonic()
    try:
        while not stop_event.is_set():
            started = time.monotonic()
            full_due = started >= next_full - tick / 10  # a tick that wakes a hair early still runs the cycle
            try:
                if lease.acquire():
                    try:
                        if full_due:
                            next_full = started + interval
                            reports.append(sweeper.run_cycle())
                            _purge(retention)
                        else:
                            sweeper.run_confirm_pass()
                    finally:
                        if not stop_event.is_set():  # when stopping, the jobs and the outbox wait for the next worker
                            _job_work("batch", batches, once)  # before the mail pass: its reminders go out this tick
                            _job_work("scan", scans, once)
                            _send_mail(mail, once)  # a failed grant cycle does not hold the mail back
                    if keep_lease:
                        lease.renew()  # a long cycle must not let the lease lapse before the next one
                    else:
                        lease.release()  # between passes, `proofup worker --once` in another terminal may run
                else:
                    log.info("worker: lease %r is held by another worker; standing by", lease.name)
            except Exception:
                if once:
                    raise
                log.exception("worker: cycle failed; trying again in %.0f s", tick)
            if once:
                break
            # Full cycles start every interval (not interval + cycle time): the invariant's bound stays one interval.
            stop_event.wait(max(0.0, min(started + tick, next_full) - time.monotonic()))
    finally:
        try:
            lease.release()
        except Exception:  # the database may be gone; the lease then simply expires
            log.warning("worker: could not release lease %r; it expires by itself", lease.name)
    return list(reports)


@contextmanager
def stopping_on_signals(stop_event: threading.Event, grace: float = STOP_GRACE_SECONDS) -> Iterator[None]:
    """Stop the worker on SIGINT or SIGTERM: end the current step, or abandon it after grace seconds."""
    def stop(signum, frame) -> None:
        if stop_event.is_set():
            raise WorkerStopped(f"second stop signal {signal.Signals(signum).name}")
        log.info("worker: %s received; stopping after the current step", signal.Signals(signum).name)
        # A thread sets the event: this handler runs on the main thread, which may hold the event's own lock
        # inside stop_event.wait(), and setting it from here would wait for that lock for ever.
        threading.Thread(target=stop_event.set, name="proofup-worker-stop", daemon=True).start()
        signal.setitimer(signal.ITIMER_REAL, grace)

    def abandon(signum, frame) -> None:
        raise WorkerStopped(f"the current step did not end within {grace:.0f} s of the stop signal")

    # Installed explicitly, so a worker started in the background of a script (SIGINT inherited as ignored)
    # still stops on SIGINT, and SIGTERM (systemd) gives the lease back instead of killing the process outright.
    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, abandon)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _job_work(name: str, jobs, once: bool) -> None:
    """Do a background job's part of this tick (batches, scans); a failure waits for the next tick."""
    if jobs is None:
        return
    try:
        jobs.work()
    except Exception:
        if once:
            raise
        log.exception("worker: %s pass failed; trying again next tick", name)


def _send_mail(mail, once: bool) -> None:
    """Send due mail; a failure here never stops the grants' work (the mail stays queued)."""
    if mail is None:
        return
    try:
        mail.send_due()
    except Exception:
        if once:
            raise
        log.exception("worker: mail pass failed; the mail stays in the outbox")


def _purge(retention: Retention | None) -> None:
    """Delete one chunk of old records; a failure is retried next cycle and never holds up the grants."""
    if retention is None:
        return
    try:
        retention.purge()
    except Exception:
        log.exception("worker: retention purge failed; trying again next cycle")


def start_worker_thread(sweeper: Sweeper, lease: Lease, *, interval: float = DEFAULT_INTERVAL_SECONDS,
                        confirm_interval: float | None = None, mail=None,
                        keep_lease: bool = True, batches=None, scans=None) -> tuple[threading.Thread, threading.Event]:
    """Run the worker in a daemon thread (demo mode); set the returned event to stop it."""
    stop_event = threading.Event()
    thread = threading.Thread(target=run_worker, args=(sweeper, lease), name="proofup-worker", daemon=True,
                              kwargs={"interval": interval, "stop_event": stop_event,
                                      "confirm_interval": confirm_interval, "mail": mail, "keep_lease": keep_lease,
                                      "batches": batches, "scans": scans})
    thread.start()
    return thread, stop_event
