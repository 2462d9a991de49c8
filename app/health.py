"""Readiness of this instance, and the health of what it depends on: checked in the background, cached, reported apart.

/readyz answers the load balancer: can THIS instance serve its pages? Its database answers and is at the
schema this code expects (its settings were loaded, or it would not be running). The directory, Graph, the
sign-in authority, the mail server and Redis are not part of it: while AD is down every instance still
serves the portal's own "the account system is not answering" page, which tells a student more than the
balancer's error page would.

Their health is for monitoring (/health/dependencies, the proofup_dependency_up gauges on /metrics). Each
process checks them at most once every PROOFUP_DEPENDENCY_CHECK_SECONDS, in a background thread that a
scrape starts when the last results are older than that; a scrape never waits for a check. The checks are
those of `proofup doctor` (app/doctor.py), run over adapters kept for the process: a bind on every DC on a
connection of its own (never the one students' look-ups queue for), the authority's discovery document
and keys, a Graph token with the portal's roles, a login at the mail server, a Redis ping.
"""
from __future__ import annotations

import functools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily

from app.adapters.http import forget_connections_after_fork
from app.config import Settings

log = logging.getLogger(__name__)

OK = "ok"
FAILED = "failed"


def readiness(store: Any) -> dict[str, str]:
    """Check what this instance needs to serve its pages: its settings, its database, the schema's revision."""
    from app.adapters.store import schema_head

    checks = {"settings": OK}  # a process whose settings failed to load never started serving
    try:
        current = store.schema_revision()
    except Exception as exc:  # any failure means not ready; the reason goes to the log, not the caller
        log.warning("not ready: the database does not answer: %s", exc)
        return {**checks, "database": FAILED, "schema": FAILED}
    checks["database"] = OK
    if current != schema_head():
        log.warning("not ready: the database's schema is %s, this version of the portal needs %s",
                    current, schema_head())
        checks["schema"] = FAILED
    else:
        checks["schema"] = OK
    return checks


@dataclass(frozen=True)
class DependencyStatus:
    """One dependency (or one DC of the directory) as last checked: whether it answered, and what was found."""

    name: str  # directory, sign-in, graph, mail, redis
    target: str  # the DC's URL, the authority, ...: what was asked
    ok: bool
    detail: str


Probe = Callable[[], list[DependencyStatus]]


@dataclass(frozen=True)
class DependencyReport:
    """The last results of one process's checks, and when they were taken."""

    statuses: tuple[DependencyStatus, ...]
    checked_at: datetime | None  # when the last finished round started; None before the first
    checking: bool  # a round is running now
    period_seconds: float

    @property
    def status(self) -> str:
        """Say "checking" before the first round, "down" if anything failed, else "ok"."""
        if self.checked_at is None:
            return "checking"
        return "ok" if all(s.ok for s in self.statuses) else "down"

    def as_json(self, now: datetime) -> dict[str, Any]:
        """Return the report for /health/dependencies."""
        age = None if self.checked_at is None else round((now - self.checked_at).total_seconds(), 1)
        return {"status": self.status, "checked_at": self.checked_at.isoformat() if self.checked_at else None,
                "age_seconds": age, "checking": self.checking, "period_seconds": self.period_seconds,
                "dependencies": [{"name": s.name, "target": s.target, "ok": s.ok, "detail": s.detail}
                                 for s in self.statuses]}


class DependencyMonitor:
    """Check the dependencies at most once a period, in the background, and hand out the last results at once."""

    def __init__(self, make_probes: Callable[[], list[Probe]], period_seconds: float, clock: Callable[[], datetime]):
        self._make_probes = make_probes  # called in the first round of each process: adapters are built there
        self.period_seconds = period_seconds
        self.clock = clock
        self._reset()
        forget_connections_after_fork(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._probes: list[Probe] | None = None
        self._statuses: tuple[DependencyStatus, ...] = ()
        self._checked_at: datetime | None = None
        self._started_at: datetime | None = None
        self._round: threading.Thread | None = None

    def _after_fork(self) -> None:
        # A gunicorn worker checks for itself: its parent's results, lock and adapters are not its own.
        self._reset()

    def report(self) -> DependencyReport:
        """Return the last results without waiting; start a round in the background if they are a period old."""
        with self._lock:
            now = self.clock()
            due = self._started_at is None or (now - self._started_at).total_seconds() >= self.period_seconds
            if due and self._round is None:
                self._started_at = now
                self._round = threading.Thread(target=self._check, args=(now,), name="dependency-check", daemon=True)
                self._round.start()
            return DependencyReport(self._statuses, self._checked_at, self._round is not None, self.period_seconds)

    def wait(self, timeout: float) -> bool:
        """Wait for a running round to finish (tests, `proofup` commands); tell whether none runs now."""
        with self._lock:
            running = self._round
        if running is not None:
            running.join(timeout)
        return running is None or not running.is_alive()

    def _check(self, started: datetime) -> None:
        try:
            if self._probes is None:
                self._probes = self._make_probes()
            with ThreadPoolExecutor(max_workers=max(1, len(self._probes)), thread_name_prefix="dependency") as pool:
                statuses = tuple(s for found in pool.map(_run, self._probes) for s in found)
        except Exception:  # a round that cannot even start must not leave the monitor "checking" for ever
            log.exception("dependency checks could not run")
            statuses = (DependencyStatus("checks", "", False, "the checks could not run (see the portal's log)"),)
        for status in statuses:
            if not status.ok:
                log.warning("dependency %s %s does not answer: %s", status.name, status.target, status.detail)
        with self._lock:
            self._statuses, self._checked_at, self._round = statuses, started, None


def _run(probe: Probe) -> list[DependencyStatus]:
    return probe()


def _single(name: str, target: str, check: Callable[[], str]) -> Probe:
    """Make a probe of one target from a doctor check that returns what it found or raises."""
    from app.doctor import describe_failure

    def probe() -> list[DependencyStatus]:
        try:
            return [DependencyStatus(name, target, True, check())]
        except Exception as exc:  # every failure is a result here, never a crash of the round
            return [DependencyStatus(name, target, False, describe_failure(exc))]

    return probe


def _directory_probe(settings: Settings) -> Probe:
    from app import doctor
    from app.wiring import build_directory

    if doctor.uses_demo_directory(settings):
        return _single("directory", "demo", lambda: doctor.directory(settings))
    ldap = functools.cache(lambda: build_directory(settings))  # built in the first round, kept for the process

    def probe() -> list[DependencyStatus]:
        try:
            checked = ldap().check_servers()
        except Exception as exc:  # the directory could not even be built (a setting)
            return [DependencyStatus("directory", "", False, doctor.describe_failure(exc))]
        return [DependencyStatus("directory", url, error is None, "bind and read answered" if error is None
                                 else str(error)) for url, error in checked.items()]

    return probe


def dependency_probes(settings: Settings) -> list[Probe]:
    """Return a probe for each dependency the settings configure, over `proofup doctor`'s checks."""
    from app import doctor
    from app.adapters.budget import UnlimitedBudget
    from app.wiring import build_graph, build_identity

    identity = functools.cache(lambda: build_identity(settings))
    probes = [_single("sign-in", settings.authority, lambda: doctor.authority_discovery(identity()))]
    if settings.ldap_url or settings.demo_directory:
        probes.append(_directory_probe(settings))
    if settings.graph_client_id:
        graph = functools.cache(lambda: build_graph(settings, UnlimitedBudget()))  # asks for no Graph data
        probes.append(_single("graph", settings.graph_authority, lambda: _token_roles(doctor.graph_permissions(graph()))))
    if settings.smtp_host:
        probes.append(_single("mail", settings.smtp_host, lambda: doctor.mail(settings)))
    if settings.redis_url:
        probes.append(_single("redis", "redis", lambda: doctor.redis(settings)))  # its URL may hold a password
    return probes


def _token_roles(roles: Iterable[str]) -> str:
    return "app-only token with " + ", ".join(sorted(roles))


class DependencyCollector:
    """Hand a scrape the last results as gauges (and start the next round when they are a period old)."""

    def __init__(self, monitor: DependencyMonitor):
        self.monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self.monitor.report()
        up = GaugeMetricFamily("proofup_dependency_up", "Whether a dependency answered this process's last check "
                               "(1) or not (0), by dependency and target (each DC of the directory apart). "
                               "Absent until the first check after a start.", labels=["dependency", "target"])
        for status in report.statuses:
            up.add_metric([status.name, status.target], 1 if status.ok else 0)
        yield up
        if report.checked_at is not None:
            yield GaugeMetricFamily("proofup_dependency_checked_timestamp_seconds",
                                    "When this process's last dependency check started (Unix time).",
                                    value=report.checked_at.timestamp())
