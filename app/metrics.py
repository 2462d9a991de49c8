"""Prometheus metrics: what happened is counted from events, what is now is read from the database when scraped.

Under gunicorn (and beside `proofup worker`) every process writes its values to files in
PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode) and a scrape adds them up; without
that variable (demo, tests) the values live in this process. Either way nothing here is a custom
collector inside a worker: the counts that describe the present (open grants, grants past their end)
are read from the database by whichever process answers the scrape, so they are true for every instance.
"""
from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# The in-process registry; in multiprocess mode the values go to files instead and a scrape reads those.
REGISTRY = CollectorRegistry(auto_describe=True)

GRANT_TRANSITIONS = Counter(
    "proofup_grant_transitions", "Grants that reached a state, by kind: opened, activated, released, expired, "
    "failed, cancelled.", ["kind"], registry=REGISTRY)
RELEASE_SECONDS = Histogram(
    "proofup_release_seconds", "Seconds from a strong method being registered to the student's bypass "
    "membership being removed.", buckets=(5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600), registry=REGISTRY)
UNLOCK_REFUSALS = Counter(
    "proofup_unlock_refusals", "Unlocks the policy refused, by reason (privileged, not_stuck, ...).", ["reason"],
    registry=REGISTRY)
SIGN_INS = Counter(
    "proofup_sign_ins", "Sign-ins by outcome (succeeded, failed) and reason.", ["outcome", "reason"],
    registry=REGISTRY)
GRAPH_REQUESTS = Counter(
    "proofup_graph_requests", "Requests sent to Microsoft Graph, by throttling category.", ["category"],
    registry=REGISTRY)
GRAPH_THROTTLED = Counter(
    "proofup_graph_throttled", "Graph answers 429 (throttled), by category.", ["category"], registry=REGISTRY)
GRAPH_BUDGET_WAITS = Counter(
    "proofup_graph_budget_waits", "Graph requests the shared budget made wait or refused, by category.",
    ["category"], registry=REGISTRY)
LDAP_OPERATIONS = Counter(
    "proofup_ldap_operations", "LDAP operations, by domain controller.", ["dc"], registry=REGISTRY)
LDAP_ERRORS = Counter(
    "proofup_ldap_errors", "LDAP operations that failed, by domain controller.", ["dc"], registry=REGISTRY)
WORKER_CYCLE_SECONDS = Histogram(
    "proofup_worker_cycle_seconds", "Duration of the worker's full cycles.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120), registry=REGISTRY)
WORKER_LAST_SUCCESS = Gauge(
    "proofup_worker_last_success_timestamp_seconds", "When a worker last finished a full cycle without errors "
    "(Unix time).", multiprocess_mode="max", registry=REGISTRY)
WORKER_CYCLE_ERRORS = Counter(
    "proofup_worker_cycle_errors", "Errors recorded by the worker's full cycles (one per failed step).",
    registry=REGISTRY)


class StateCounts(Protocol):
    """The database reads a scrape needs."""

    def grant_counts(self, now: datetime) -> dict[str, int]: ...


class OutboxCounts(Protocol):
    def counts(self) -> Mapping[Any, int]: ...


class StateCollector:
    """Read the present from the database at scrape time: open grants, grants past their end, the mail outbox."""

    def __init__(self, store: StateCounts, clock: Callable[[], datetime], outbox: OutboxCounts | None = None):
        self.store = store
        self.clock = clock
        self.outbox = outbox

    def collect(self) -> Iterable[GaugeMetricFamily]:
        counts = self.store.grant_counts(self.clock())
        open_grants = GaugeMetricFamily("proofup_open_grants", "Grants open now, by state (pending, active).",
                                        labels=["state"])
        for state in ("pending", "active"):
            open_grants.add_metric([state], counts.get(state, 0))
        yield open_grants
        yield GaugeMetricFamily(
            "proofup_grants_past_end", "Open grants whose end has passed: their bypass membership outlives them.",
            value=counts.get("past_end", 0))
        mails = GaugeMetricFamily("proofup_outbox_mails", "Mails in the outbox, by state (queued and sending are "
                                  "its depth; bounced and failed are kept until retention removes them).",
                                  labels=["state"])
        for state, n in (self.outbox.counts() if self.outbox is not None else {}).items():
            mails.add_metric([getattr(state, "value", str(state))], n)
        yield mails

def multiprocess_dir() -> Path | None:
    """Return the multiprocess directory if this process runs in multiprocess mode."""
    value = os.environ.get(MULTIPROC_ENV, "")
    return Path(value) if value else None


_PID_IN_NAME = re.compile(r"_(\d+)\.db$")


def clear_dead_files(directory: Path | None = None) -> int:
    """Remove the value files of processes that no longer run (a new start counts afresh); return how many."""
    directory = directory or multiprocess_dir()
    if directory is None:
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    removed = 0
    for path in directory.glob("*.db"):
        match = _PID_IN_NAME.search(path.name)
        if match and not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True


def mark_dead(pid: int) -> None:
    """Drop a dead process's live gauges (gunicorn's child_exit); its counters stay in the totals."""
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def exposition(state: StateCollector | None = None) -> bytes:
    """Return the text a scrape receives: every process's values plus the database's present."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory is not None:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=str(directory))
    else:
        registry.register(_Forward(REGISTRY))
    if state is not None:
        registry.register(state)
    return generate_latest(registry)


class _Forward:
    """Hand a registry's metrics to another registry's scrape."""

    def __init__(self, source: CollectorRegistry):
        self.source = source

    def collect(self):
        return self.source.collect()
