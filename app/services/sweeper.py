"""One worker cycle: expire, recover, confirm in bulk, reconcile. A failure on one grant never stops the rest."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from app.domain.actors import WORKER
from app.domain.directory import dn_key
from app.domain.evidence import GraphError
from app.domain.grants import GrantState, GrantView, release_for, utc_now
from app.domain.ports import DEFAULT_LIMITS, DIRECTORY, Directory, Graph, RequestBudget, Store
from app.services.events import CycleEvent, Events
from app.services.grants import GrantService

log = logging.getLogger(__name__)
CHECK_JITTER_ALLOWANCE = 0.8  # a check older than 80% of the period is due
BATCH_SIZE = 20  # users per $batch request (Graph's limit)
BUDGET_REFUSED = "budget"  # GraphError.code when the shared budget, not Graph, refused the request
# The notes a grant keeps when its methods check could not run (the page says "still checking" for both).
BUDGET_NOTE = "budget"  # Graph throttled us, or our own budget held the check back
GRAPH_UNAVAILABLE = "graph_unavailable"  # any other failure: Graph down, a timeout, no answer


# The worker may spend this share of the directory budget (every methods check); diagnoses get the rest.
WORKER_BUDGET_SHARE = 0.5


def checks_per_cycle_for(check_every_seconds: float) -> int:
    """Return how many users one cycle may check: the worker's share of the directory budget per period."""
    rate = DEFAULT_LIMITS[DIRECTORY].rate
    return max(BATCH_SIZE, int(rate * check_every_seconds * WORKER_BUDGET_SHARE))


def check_note_for(error: GraphError) -> str:
    """Return the note a grant keeps when its methods check failed with this error."""
    return BUDGET_NOTE if error.code == BUDGET_REFUSED or error.status == 429 else GRAPH_UNAVAILABLE


@dataclass
class CycleReport:
    """What one cycle did, for logs, `proofup worker --once` and tests."""

    expired: int = 0
    recovered: int = 0  # pending grants a crash left behind, undone
    replicated: int = 0  # lagging DCs that caught up
    checked: int = 0  # grants whose methods Graph was asked about
    deferred: int = 0  # checks the shared Graph budget postponed to a later cycle
    confirmed: int = 0  # grants whose person now has a strong method
    released: int = 0  # of those, memberships removed and grants released
    reconciled_removed: int = 0  # members the portal added and no longer backs, removed
    reconciled_ended: int = 0  # active grants whose membership had gone, ended
    foreign_members: tuple[str, ...] = ()  # members no grant ever backed: reported, never touched
    members_without_grant: int = 0  # members left in the group that no open grant backs (foreign, or not removable)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """Return the report's numbers by name (for the cycle event)."""
        numbers = {k: v for k, v in vars(self).items() if isinstance(v, int) and not isinstance(v, bool)}
        return {**numbers, "foreign": len(self.foreign_members), "errors": len(self.errors)}

    def summary(self) -> str:
        """Return one log line."""
        return (f"expired={self.expired} recovered={self.recovered} replicated={self.replicated} "
                f"checked={self.checked} deferred={self.deferred} confirmed={self.confirmed} released={self.released} "
                f"reconciled_removed={self.reconciled_removed} reconciled_ended={self.reconciled_ended} "
                f"foreign={len(self.foreign_members)} without_grant={self.members_without_grant} "
                f"errors={len(self.errors)} seconds={self.seconds:.2f}")


class Sweeper:
    """Keep the bypass group and the grant records in agreement, and end grants that are done."""

    def __init__(self, store: Store, directory: Directory, graph: Graph | None, grants: GrantService,
                 budget: RequestBudget, *, bypass_group_dn: str, clock: Callable[[], datetime] = utc_now,
                 pending_grace_seconds: float = 60.0, check_every_seconds: float = 10.0,
                 max_checks_per_cycle: int | None = None, pass_every_seconds: float | None = None,
                 events: Events | None = None):
        self.store = store
        self.directory = directory
        self.graph = graph
        self.grants = grants
        self.budget = budget
        self.bypass_group_dn = bypass_group_dn
        self.clock = clock
        # Longer than any unlock in flight can take (it waits up to replication_wait_seconds for the DCs).
        self.pending_grace_seconds = max(pending_grace_seconds, grants.replication_wait_seconds + 5)
        self.check_every_seconds = check_every_seconds
        # Confirmation passes may run more often than a grant is due; the cap is the worker's budget share
        # per pass, so more passes never spend more than the share.
        self.max_checks_per_cycle = max_checks_per_cycle or checks_per_cycle_for(
            min(check_every_seconds, pass_every_seconds or check_every_seconds))
        self._reported_foreign: frozenset[str] = frozenset()
        self.events = events or grants.events  # one set of signals for the grants and the cycles

    def run_cycle(self) -> CycleReport:
        """Run every step once and say what happened."""
        started = time.monotonic()
        report = CycleReport()
        try:
            grants = self.store.open_grants()
        except Exception as exc:  # database down or locked past busy_timeout: nothing else is safe to do
            self._fail(report, "reading open grants", exc)
            grants = None
        if grants is not None:
            now = self.clock()
            live = self._expire_and_recover(grants, now, report)
            self._recheck_replication(live, report)
            self._confirm(live, now, report)
            self._reconcile(report)
        report.seconds = time.monotonic() - started
        log.info("worker cycle: %s", report.summary())
        self.events.emit(self.events.worker_cycle_done, self, CycleEvent(report.counts(), report.seconds))
        return report

    def run_confirm_pass(self) -> CycleReport:
        """Check due active grants in bulk and release the confirmed; leave expiry and the rest to full cycles."""
        started = time.monotonic()
        report = CycleReport()
        try:
            grants = self.store.open_grants()
        except Exception as exc:
            self._fail(report, "reading open grants", exc)
            grants = []
        now = self.clock()
        # A grant past its end is the full cycle's to expire (with its audit), never released here.
        live = [g for g in grants if g.state is GrantState.ACTIVE and not g.past_end(now)]
        self._confirm(live, now, report)
        report.seconds = time.monotonic() - started
        log.debug("worker confirm pass: %s", report.summary())
        return report

    def _expire_and_recover(self, grants: list[GrantView], now: datetime, report: CycleReport) -> list[GrantView]:
        live = []
        for grant in grants:
            try:
                if grant.past_end(now):
                    self.grants.close_grant(grant.id, outcome="expired", actor=WORKER, reason="grant time ended")
                    report.expired += 1
                elif grant.stale_pending(now, self.pending_grace_seconds):
                    self.grants.abandon_stale(grant.id, actor=WORKER,
                                              reason="interrupted before activation; undone by the worker")
                    report.recovered += 1
                elif grant.state is GrantState.ACTIVE:
                    live.append(grant)
            except Exception as exc:
                self._fail(report, f"grant {grant.id} ({grant.upn})", exc)
        return live

    def _recheck_replication(self, live: list[GrantView], report: CycleReport) -> None:
        for grant in live:
            if grant.dc_confirmed:
                continue
            try:
                if self.grants.recheck_replication(grant.id, actor=WORKER).dc_confirmed:
                    report.replicated += 1
            except Exception as exc:
                self._fail(report, f"replication check of grant {grant.id}", exc)

    def _confirm(self, live: list[GrantView], now: datetime, report: CycleReport) -> None:
        if self.graph is None:
            return
        # Those the student asked for ("I have finished"), then never-checked, then the longest unchecked: whoever
        # a full pass left out goes next. Passes start about one period apart, never exactly: a check from the
        # previous period counts as due.
        due_after = self.check_every_seconds * CHECK_JITTER_ALLOWANCE
        due = sorted((g for g in live if g.due_for_check(now, due_after)), key=GrantView.check_order)
        due = due[: self.max_checks_per_cycle]
        if not due:
            return
        try:
            results = self.graph.methods_for([g.entra_user_id for g in due])
        except Exception as exc:  # the adapter should report per user; a raise still must not stop the cycle
            self._fail(report, "bulk method check", exc)
            self._note_quietly(due, GRAPH_UNAVAILABLE)
            return
        answered = self.clock()  # when the portal saw the methods, however long the removals below then take
        throttled: list[float] = []
        failed: list[str] = []
        notes: dict[str, list[GrantView]] = {}
        unchanged: list[int] = []  # answered, no strong method yet: stamped together below
        for grant in due:
            result = results.get(grant.entra_user_id)
            try:
                if isinstance(result, GraphError) or result is None:
                    error = result or GraphError("no answer for this user")
                    notes.setdefault(check_note_for(error), []).append(grant)
                    if error.code == BUDGET_REFUSED:
                        report.deferred += 1  # our own governor said "not now": checked next cycle
                        continue
                    report.errors.append(f"methods of grant {grant.id}: {error}")
                    if error.status == 429 and error.retry_after:
                        throttled.append(error.retry_after)
                    else:
                        failed.append(str(error))
                    continue
                report.checked += 1
                release = release_for(result)
                if release is None:
                    unchanged.append(grant.id)
                    continue
                report.confirmed += 1
                ended = self.grants.close_grant(grant.id, outcome="released", actor=WORKER, reason=release.reason,
                                                method_seen_at=answered)
                if ended.state is GrantState.RELEASED:
                    report.released += 1
            except Exception as exc:
                self._fail(report, f"grant {grant.id} ({grant.upn})", exc)
        try:
            # One write for the whole pass, stamped with its start, so the next pass (one interval later) finds
            # them due again. A crash before it only means they are checked again.
            self.store.record_methods_checks(unchanged, at=now)
        except Exception as exc:
            self._fail(report, "recording the methods checks", exc)
        for note, grants in notes.items():
            self._note_quietly(grants, note)
        if failed:
            self._audit_quietly("worker.graph_error", outcome="error", users=len(failed), error=failed[0])
        if throttled:
            # Every instance waits out the longest Retry-After Graph gave (the adapter may have already: max wins).
            self.budget.back_off(DIRECTORY, max(throttled))
            self._audit_quietly("worker.graph_throttled", outcome="error", users=len(throttled),
                                retry_after=max(throttled))

    def _note_quietly(self, grants: list[GrantView], note: str) -> None:
        """Leave the note the students' pages show ("still checking") on grants whose check could not run."""
        try:
            self.store.note_check_failed([g.id for g in grants if g.check_note != note], note)
        except Exception as exc:  # the database itself may be what failed; the next pass notes it again
            log.warning("worker: could not note the failed checks: %s", exc)

    def _reconcile(self, report: CycleReport) -> None:
        try:
            # Snapshot active grants BEFORE listing: a grant active now had its member added before it.
            # A pass grant puts nobody in the group: only bypass grants back (or miss) a membership.
            active = [g for g in self.store.open_grants() if g.state is GrantState.ACTIVE and g.backs_membership]
            members = self.directory.list_members(self.bypass_group_dn)
            open_keys = {dn_key(g.user_dn) for g in self.store.open_grants() if g.backs_membership}
            unbacked = [dn for dn in members if dn_key(dn) not in open_keys]
            ours = self.store.dns_with_grants(unbacked)
        except Exception as exc:
            self._fail(report, "reconcile", exc)
            return
        foreign, stuck = [], 0
        for dn in unbacked:
            if not ours[dn]:
                foreign.append(dn)
                continue
            try:
                # Look again: an unlock may have written its intent since the listing.
                still_unbacked = self.store.open_grant_for_dn(dn) is None
                if still_unbacked and self.directory.remove_member(self.bypass_group_dn, dn):
                    report.reconciled_removed += 1
                    self._audit_quietly("reconcile.removed", member_dn=dn,
                                        reason="portal-added member without an open grant")
            except Exception as exc:
                stuck += 1
                self._fail(report, f"reconcile removal of {dn}", exc)
        report.foreign_members = tuple(foreign)
        report.members_without_grant = len(foreign) + stuck
        self._report_foreign(foreign)
        try:
            # For /metrics (and its alert): every instance reads what this worker saw, from the database.
            self.store.record_bypass_check(members=len(members) - report.reconciled_removed,
                                           without_grant=report.members_without_grant, at=self.clock())
        except Exception as exc:
            self._fail(report, "recording the bypass group check", exc)
        member_keys = {dn_key(dn) for dn in members}
        settled_before = self.clock() - timedelta(seconds=self.pending_grace_seconds)
        for grant in active:
            # A fresh grant may not yet show on the DC that answered the listing: give replication time.
            fresh = grant.activated_at is not None and grant.activated_at > settled_before
            if dn_key(grant.user_dn) in member_keys or fresh:
                continue
            try:
                self.grants.close_grant(grant.id, outcome="released", actor=WORKER,
                                        reason="membership no longer in the bypass group")
                report.reconciled_ended += 1
            except Exception as exc:
                self._fail(report, f"grant {grant.id} ({grant.upn})", exc)

    def _report_foreign(self, foreign: list[str]) -> None:
        current = frozenset(dn_key(dn) for dn in foreign)
        if foreign:
            log.warning("bypass group has %d member(s) no grant backs (left alone): %s", len(foreign), foreign)
        # Audit only when the set changes, not every 30 s.
        if current != self._reported_foreign and foreign:
            self._audit_quietly("reconcile.foreign_members", outcome="reported", members=sorted(foreign))
        self._reported_foreign = current

    def _fail(self, report: CycleReport, what: str, exc: Exception) -> None:
        message = f"{what}: {type(exc).__name__}: {exc}"
        log.warning("worker: %s", message)
        report.errors.append(message)
        self._audit_quietly("worker.error", outcome="error", step=what, error=f"{type(exc).__name__}: {exc}")

    def _audit_quietly(self, action: str, outcome: str = "ok", **detail: object) -> None:
        try:
            self.store.audit(WORKER, action, outcome=outcome, **detail)
        except Exception as exc:  # the database itself may be what failed
            log.warning("worker: could not audit %s: %s", action, exc)
