"""The background worker: hold the lease, run a full cycle every interval and confirm passes between, send the
outbox's mail every tick, stop cleanly."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque

from app.adapters.lease import Lease
from app.services.retention import Retention
from app.services.sweeper import CycleReport, Sweeper

log = logging.getLogger(__name__)
DEFAULT_INTERVAL_SECONDS = 30.0
# The reports run_worker returns: the last this many full cycles. A worker runs for months: one kept per cycle
# forever grew its memory by about 2,900 reports a day at the default interval.
REPORTS_KEPT = 100


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
