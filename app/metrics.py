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
    "proofup_release_seconds", "Seconds from a grant becoming active to its release because a strong method "
    "appeared: the student's registration plus the portal's detection and removal.",
    buckets=(30, 60, 90, 120, 180, 300, 600, 900, 1800, 3600), registry=REGISTRY)
METHOD_SEEN_TO_REMOVED_SECONDS = Histogram(
    "proofup_method_seen_to_removed_seconds", "Seconds from the portal first seeing a student's new strong method "
    "to their bypass membership being removed (long when AD did not answer and the worker had to retry).",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600), registry=REGISTRY)
UNLOCK_REFUSALS = Counter(
    "proofup_unlock_refusals", "Unlocks the policy refused, by reason (privileged, not_stuck, ...).", ["reason"],
    registry=REGISTRY)
SIGN_INS = Counter(
    "proofup_sign_ins", "Sign-ins by outcome (succeeded, failed) and reason.", ["outcome", "reason"],
    registry=REGISTRY)
GRAPH_REQUESTS = Counter(
    "proofup_graph_requests", "Graph requests the shared budget let through, by throttling category (a $batch "
    "part counts once).", ["category"], registry=REGISTRY)
GRAPH_THROTTLED = Counter(
    "proofup_graph_throttled", "Graph answers 429 (throttled), by category.", ["category"], registry=REGISTRY)
GRAPH_BUDGET_WAITS = Counter(
    "proofup_graph_budget_waits", "Graph requests the shared budget refused within their wait, by category.",
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


MAIL_OUTCOMES = Counter(
    "proofup_mail_outcomes", "Mails the worker's mail pass handled, by outcome: sent, retried (a temporary failure: "
    "it stays queued), bounced (refused for good), failed (given up, or never sendable), untried (held back "
    "because the server failed as a whole).", ["outcome"], registry=REGISTRY)


INVITE_CHANGES = Counter(
    "proofup_invite_changes", "Invite links by change: created, opened (Continue pressed), used (its student signed in), "
    "revoked (by the desk, a newer invite or a closed batch), refused (a dead, forged or other account's link).",
    ["change"], registry=REGISTRY)


class StateCounts(Protocol):
    """The database reads a scrape needs."""

    def grant_counts(self, now: datetime) -> dict[str, int]: ...
    def last_bypass_check(self) -> Any: ...


class OutboxCounts(Protocol):
    def counts(self) -> Mapping[Any, int]: ...


class InviteCounts(Protocol):
    def counts(self, now: datetime) -> Mapping[Any, int]: ...


class StateCollector:
    """Read the present from the database at scrape time: open grants, grants past their end, the worker's last look
    at the bypass group, the mail outbox, invites by state."""

    def __init__(self, store: StateCounts, clock: Callable[[], datetime], outbox: OutboxCounts | None = None,
                 invites: InviteCounts | None = None):
        self.store = store
        self.clock = clock
        self.outbox = outbox
        self.invites = invites

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
        check = self.store.last_bypass_check()
        if check is not None:  # before the worker's first reconcile there is nothing to tell
            yield GaugeMetricFamily(
                "proofup_bypass_members_without_grant", "Members of the bypass group that no open grant backs, as "
                "the worker last saw them: added by hand, or by a grant that a restored database forgot.",
                value=check.without_grant)
            yield GaugeMetricFamily("proofup_bypass_members", "Members of the bypass group, as the worker last saw "
                                    "them.", value=check.members)
            yield GaugeMetricFamily("proofup_bypass_checked_timestamp_seconds", "When the worker last listed the "
                                    "bypass group (Unix time).", value=check.checked_at.timestamp())
        mails = GaugeMetricFamily("proofup_outbox_mails", "Mails in the outbox, by state (queued and sending are "
                                  "its depth; bounced and failed are kept until retention removes them).",
                                  labels=["state"])
        for state, n in (self.outbox.counts() if self.outbox is not None else {}).items():
            mails.add_metric([getattr(state, "value", str(state))], n)
        yield mails
        invites = GaugeMetricFamily("proofup_invites", "Invite links by state now (sent, opened, used, expired, "
                                    "revoked, bounced), until retention removes them.", labels=["state"])
        for state, n in (self.invites.counts(self.clock()) if self.invites is not None else {}).items():
            invites.add_metric([getattr(state, "value", str(state))], n)
        yield invites

RELEASE_REASON = "strong method registered"  # the release rule's reason (app.domain.grants.release_for)


def subscribe(events: Any) -> None:
    """Count what the portal's events tell: the one place metrics listen (the use cases know no metric)."""
    if getattr(events, "_metrics_subscribed", False):
        return  # an Events handed to a second build_services must not count everything twice
    events._metrics_subscribed = True

    def transition(kind: str) -> Callable[..., None]:
        def count(_sender: Any, event: Any) -> None:
            GRANT_TRANSITIONS.labels(kind).inc()
        return count

    def released(_sender: Any, event: Any) -> None:
        grant = event.grant
        if event.reason.startswith(RELEASE_REASON) and grant.activated_at and grant.ended_at:
            RELEASE_SECONDS.observe(max(0.0, (grant.ended_at - grant.activated_at).total_seconds()))
        if grant.method_seen_at and grant.ended_at:
            METHOD_SEEN_TO_REMOVED_SECONDS.observe(max(0.0, (grant.ended_at - grant.method_seen_at).total_seconds()))

    def signed_in(_sender: Any, event: Any) -> None:
        SIGN_INS.labels("succeeded", "ok").inc()

    def sign_in_failed(_sender: Any, event: Any) -> None:
        SIGN_INS.labels("failed", event.code or "unknown").inc()

    def refused(_sender: Any, event: Any) -> None:
        if event.action == "unlock.refused":  # the other refusals (forms, sign-in answers) are in the audit trail
            UNLOCK_REFUSALS.labels(event.refusal).inc()
        elif event.action == "invite.refused":
            INVITE_CHANGES.labels("refused").inc()

    def invites_changed(_sender: Any, event: Any) -> None:
        INVITE_CHANGES.labels(event.change).inc(event.count)

    def cycle_done(_sender: Any, event: Any) -> None:
        WORKER_CYCLE_SECONDS.observe(event.seconds)
        errors = int(event.counts.get("errors", 0))
        WORKER_CYCLE_ERRORS.inc(errors)
        if not errors:
            WORKER_LAST_SUCCESS.set_to_current_time()

    def mail_pass_done(_sender: Any, event: Any) -> None:
        for outcome, n in event.counts.items():
            if n:
                MAIL_OUTCOMES.labels(outcome).inc(n)

    for kind in ("opened", "activated", "released", "expired", "cancelled", "failed"):
        getattr(events, f"grant_{kind}").connect(transition(kind), weak=False)
    events.grant_released.connect(released, weak=False)
    events.sign_in_succeeded.connect(signed_in, weak=False)
    events.sign_in_failed.connect(sign_in_failed, weak=False)
    events.refused.connect(refused, weak=False)
    events.worker_cycle_done.connect(cycle_done, weak=False)
    events.mail_pass_done.connect(mail_pass_done, weak=False)
    events.invites_changed.connect(invites_changed, weak=False)


def count_ldap_operation(dc: str, succeeded: bool) -> None:
    """Count one LDAP operation on a DC (the directory adapter calls this after each)."""
    LDAP_OPERATIONS.labels(dc).inc()
    if not succeeded:
        LDAP_ERRORS.labels(dc).inc()


class MeteredBudget:
    """The shared Graph budget, counting the requests it lets through, those it made wait in vain, and 429s."""

    def __init__(self, inner: Any):
        self.inner = inner

    def take(self, category: str, count: int = 1, wait_seconds: float = 0.0) -> bool:
        taken = self.inner.take(category, count, wait_seconds)
        if taken:
            GRAPH_REQUESTS.labels(category).inc(count)
        else:
            GRAPH_BUDGET_WAITS.labels(category).inc()
        return taken

    def back_off(self, category: str, seconds: float) -> None:
        GRAPH_THROTTLED.labels(category).inc()  # the adapter backs off once per 429 answer
        self.inner.back_off(category, seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


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


def exposition(*collectors: Any) -> bytes:
    """Return the text a scrape receives: every process's values plus what the collectors read now."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory is not None:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=str(directory))
    else:
        registry.register(_Forward(REGISTRY))
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)


class _Forward:
    """Hand a registry's metrics to another registry's scrape."""

    def __init__(self, source: CollectorRegistry):
        self.source = source

    def collect(self):
        return self.source.collect()
