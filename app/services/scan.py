"""Who will loop, before MFA is switched on: predict each student's outcome for a group, an OU or a list,
and invite the ones who will loop (docs/helpdesk.md, "Who will loop")."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence

from app.domain.actors import Actor, ActorKind
from app.domain.directory import DirectoryError
from app.domain.errors import Refused
from app.domain.evidence import GraphError
from app.domain.grants import utc_now
from app.domain.prediction import OUTCOME_ORDER, Outcome, Prediction, predict, unknown
from app.domain.staff import StaffRole, acts_for_desk
from app.domain.upn import Upn
from app.services.bulk_diagnosis import BulkDiagnosisService, BulkProgress, parse_upns
from app.services.jobs import CHUNK, throttled
from app.services.onboarding import NotAllowed

log = logging.getLogger(__name__)

MAX_SCAN = 2000  # students in one scan: a whole intake (issue 12), and the most one invite round takes
GROUP, OU, LIST = "group", "ou", "list"  # where a scan's students come from
# A report's row: what the desk's table, the CLI's table and CSV, and the stored report show of a prediction.
GIVE_UP_AFTER = timedelta(minutes=30)  # a desk scan the directory or Graph keeps failing ends after this
ROW_FIELDS = ("upn", "outcome", "reason", "display_name", "authenticator_sign_ins", "last_sign_in", "devices",
              "methods")


def prediction_row(p: Prediction) -> dict[str, str]:
    """Return a prediction as the plain text fields of ROW_FIELDS."""
    return {"upn": p.upn, "outcome": p.outcome.value, "reason": p.reason, "display_name": p.display_name,
            "authenticator_sign_ins": str(p.sign_ins),
            "last_sign_in": p.last_sign_in.date().isoformat() if p.last_sign_in else "",
            "devices": "; ".join(p.devices), "methods": "; ".join(p.methods)}


def outcome_counts(rows: Sequence[dict[str, str]]) -> dict[str, int]:
    """Return how many rows each outcome has (every outcome named, in report order)."""
    found = Counter(row["outcome"] for row in rows)
    return {outcome.value: found.get(outcome.value, 0) for outcome in OUTCOME_ORDER}


def report_dict(rows: Sequence[dict[str, str]], *, invalid: Sequence[str] = (), graph_requests: int = 0,
                sign_in_pages: int = 0, seconds: float = 0.0) -> dict[str, Any]:
    """Return a report as plain JSON-able data (what a desk scan stores): rows will-loop first, then by UPN."""
    rank = {outcome.value: i for i, outcome in enumerate(OUTCOME_ORDER)}
    ordered = sorted(rows, key=lambda row: (rank.get(row["outcome"], len(rank)), row["upn"]))
    return {"rows": ordered, "counts": outcome_counts(ordered), "invalid": list(invalid),
            "graph_requests": graph_requests, "sign_in_pages": sign_in_pages, "seconds": round(seconds, 1)}


@dataclass(frozen=True)
class ScanReport:
    """A scan's predictions (will loop first), the values that were no UPN, and what it cost."""

    source: str  # e.g. "group:CN=MFA_Next,OU=Groups,DC=uni,DC=test" or "list:intake.csv"
    predictions: tuple[Prediction, ...]
    invalid: tuple[str, ...] = ()
    graph_requests: int = 0
    sign_in_pages: int = 0
    seconds: float = 0.0

    def counts(self) -> dict[Outcome, int]:
        """Return how many students each outcome has (every outcome named, in report order)."""
        found = Counter(p.outcome for p in self.predictions)
        return {outcome: found.get(outcome, 0) for outcome in OUTCOME_ORDER}

    @property
    def will_loop(self) -> tuple[Upn, ...]:
        return tuple(p.upn for p in self.predictions if p.will_loop)

    @property
    def complete(self) -> bool:
        """Tell whether every student got a prediction (none unknown because Graph could not answer)."""
        return not any(p.outcome is Outcome.UNKNOWN for p in self.predictions)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-able data (what a desk scan stores)."""
        return report_dict([prediction_row(p) for p in self.predictions], invalid=self.invalid,
                           graph_requests=self.graph_requests, sign_in_pages=self.sign_in_pages,
                           seconds=self.seconds)


class ScanService:
    """Scan a group, an OU or a list for the service desk or an admin; invite the ones who will loop."""

    def __init__(self, *, directory: Any, bulk: BulkDiagnosisService, store: Any, invites: Any = None,
                 max_students: int = MAX_SCAN):
        self.directory = directory
        self.bulk = bulk
        self.store = store
        self.invites = invites
        self.max_students = max_students

    def students_in(self, kind: str, dn: str) -> list[Upn]:
        """List the UPNs of the users in a group (nested groups followed) or under an OU; DirectoryError if not."""
        if kind == GROUP:
            users = self.directory.users_in_group(dn, self.max_students)
        elif kind == OU:
            users = self.directory.users_under(dn, self.max_students)
        else:
            raise ValueError(f"a scan reads a group or an OU, not {kind!r}")
        return [u.upn for u in users]

    def scan(self, upns: Sequence[str], *, actor: Actor, source: str,
             progress: Callable[[BulkProgress], None] | None = None, client: str = "") -> ScanReport:
        """Predict each student's outcome once MFA is required (bulk diagnosis as if in the group); audited."""
        self._may_scan(actor)
        if len(upns) > self.max_students:
            raise ValueError(f"at most {self.max_students} students in one scan, not {len(upns)}")
        report = self.predict(upns, actor=actor, source=source, progress=progress)
        self.audit_run(actor, report.source, [prediction_row(p) for p in report.predictions], invalid=report.invalid,
                       client=client)
        return report

    def predict(self, upns: Sequence[str], *, actor: Actor, source: str = "",
                progress: Callable[[BulkProgress], None] | None = None) -> ScanReport:
        """Predict each student's outcome (bulk diagnosis as if in the group), will loop first; not audited."""
        found = self.bulk.diagnose_many(upns, actor=actor, progress=progress, assume_required=True)
        predictions = [predict(d) for d in found.diagnoses.values()]
        predictions += [unknown(upn, why) for upn, why in found.failures.items()]
        rank = {outcome: i for i, outcome in enumerate(OUTCOME_ORDER)}
        predictions.sort(key=lambda p: (rank[p.outcome], p.upn))
        return ScanReport(source=source[:300], predictions=tuple(predictions), invalid=found.invalid,
                          graph_requests=found.graph_requests, sign_in_pages=found.sign_in_pages,
                          seconds=found.seconds)

    def audit_run(self, actor: Actor, source: str, rows: Sequence[dict[str, str]], *, invalid: Sequence[str] = (),
                  client: str = "", audit: Any = None) -> None:
        """Audit a finished scan: who, why, where from, and how many students each outcome has.

        With `audit` (a unit of work's AuditLog) the line joins that transaction; else it is one of its own.
        """
        detail = {"client": client, "source": source[:300], "students": len(rows), "invalid": len(invalid),
                  **outcome_counts(rows)}
        if audit is not None:
            audit.add(actor, "scan.run", None, None, "ok", reason=actor.reason, **detail)
        else:
            self.store.audit(actor, "scan.run", reason=actor.reason, **detail)

    def invite_will_loop(self, report: ScanReport, *, actor: Actor, reason: str, client: str = "") -> list[Any]:
        """Invite every student the report says will loop (one unit of work: all or none); audited per invite."""
        return self.invite(report.will_loop, actor=actor, reason=reason, source=report.source, client=client)

    def invite(self, upns: Sequence[Upn], *, actor: Actor, reason: str, source: str, client: str = "") -> list[Any]:
        """Invite the students a scan found will loop, through InviteService (all or none); audited."""
        if self.invites is None:
            raise NotAllowed("no_invites")
        if not upns:
            return []
        made = self.invites.invite_many(upns, actor, reason=reason, client=client)
        self.store.audit(actor, "scan.invited", reason=reason, client=client, source=source, invited=len(made))
        return made

    @staticmethod
    def _may_scan(actor: Actor) -> None:
        """The desk's helpdesk role and admins at the CLI scan (a scan reads many students' evidence)."""
        if actor.kind is ActorKind.CLI or acts_for_desk(actor):
            return
        raise NotAllowed("not_allowed")


class ScanRefused(Refused):
    """A background scan or its invites cannot go ahead; `code` names why (the desk's page words it)."""


class ScanJobs:
    """The desk's scans, a background job (app/services/jobs.py): the page queues the students here, the worker
    predicts a chunk a tick under its lease, and the progress and report live in the store (ScanStore), so any
    instance shows them and a restart loses at most the chunk that was under way."""

    def __init__(self, scan: ScanService, scans: Any, *, clock: Callable[[], datetime] | None = None,
                 chunk: int = CHUNK):
        self.scan = scan
        self.scans = scans
        self.clock = clock or utc_now
        self.chunk = chunk

    def start(self, kind: str, value: str | Sequence[str], *, actor: Actor, source: str = "",
              client: str = "") -> int:
        """Find the students (a group's or an OU's DN, or a list of UPNs) and queue their scan for the worker.

        The students are read before this returns, so a wrong DN is refused at once (ScanRefused).
        """
        ScanService._may_scan(actor)
        try:
            upns = self.scan.students_in(kind, value) if kind in (GROUP, OU) else list(value)
        except DirectoryError as error:
            raise ScanRefused("directory", detail=str(error)) from None
        if not upns:
            raise ScanRefused("nobody")
        if len(upns) > self.scan.max_students:
            raise ScanRefused("too_many")
        wanted, invalid = parse_upns(upns)
        source = source or (f"{kind}:{value}" if kind in (GROUP, OU) else LIST)
        return self.scans.start(source=source, reason=actor.reason, created_by=str(actor.id), now=self.clock(),
                                upns=wanted, invalid=invalid, client=client)

    def work(self) -> int:
        """Predict one chunk of the oldest queued scan that can go on (the worker's part); return how many students.

        One chunk a tick, whatever the queue: the grants' work (expiry) never waits behind several scans.
        A scan whose chunk failed (an outage) lets the next one have the tick.
        """
        for view in self.scans.running():
            predicted = self.run_chunk(view)
            if predicted:
                return predicted
        return 0

    def run_chunk(self, view: Any) -> int:
        """Predict a scan's next unchecked students and store them with the progress; finish it when none are left."""
        upns = self.scans.unchecked(view.id, self.chunk)
        try:
            actor = Actor.staff(view.created_by, role=StaffRole.HELPDESK.value, reason=view.reason)
            if not upns:
                self._finish(view.id, actor)
                return 0

            # Counted from the rows, not the scan's `done`: a chunk cut off by a crash may have moved that ahead.
            checked = self.scans.checked(view.id)

            def progress(step: BulkProgress) -> None:
                self.scans.progress(view.id, phase=step.phase, done=min(view.total, checked + step.done),
                                    total=view.total, now=self.clock())

            report = self.scan.predict(upns, actor=actor, source=view.source, progress=throttled(progress))
        except (DirectoryError, GraphError) as error:
            # The chunk stays undone and the next tick tries it again: an outage loses none of the scan, and
            # only one that outlasts GIVE_UP_AFTER ends it (the desk then scans again).
            given_up = self.clock() - view.created_at > GIVE_UP_AFTER
            log.warning("scan %s: %s; %s", view.id, error.__class__.__name__,
                        "given up" if given_up else "trying again next tick")
            if given_up:
                self.scans.fail(view.id, "unavailable", now=self.clock())
            else:
                self.scans.waiting(view.id, "unavailable", now=self.clock())
            return 0
        except Exception:  # the worker has no desk to tell: the page says it failed
            log.exception("scan %s failed", view.id)
            self.scans.fail(view.id, "error", now=self.clock())
            return 0
        rows = {p.upn: prediction_row(p) for p in report.predictions}
        # A student the bulk diagnosis returned nothing for must not be asked again every tick forever.
        rows.update({upn: prediction_row(unknown(Upn(upn), "graph_unavailable")) for upn in upns if upn not in rows})
        written = self.scans.record_chunk(view.id, rows, graph_requests=report.graph_requests,
                                          sign_in_pages=report.sign_in_pages, seconds=report.seconds,
                                          now=self.clock())
        if len(upns) < self.chunk:
            self._finish(view.id, actor)
        return written

    def _finish(self, scan_id: int, actor: Actor) -> None:
        """Store the report of a scan whose students all have a prediction, and audit it once."""
        view = self.scans.get(scan_id)
        if view is None or view.state != "running":
            return
        rows = self.scans.rows(scan_id)
        invalid = view.report.get("invalid", [])
        report = report_dict(rows, invalid=invalid, graph_requests=view.graph_requests,
                             sign_in_pages=view.sign_in_pages, seconds=view.seconds)
        with self.scan.store.unit_of_work() as work:  # done and audited together, or neither
            if self.scans.finish(scan_id, report, now=self.clock(), session=work.session):
                self.scan.audit_run(actor, view.source, rows, invalid=invalid, client=view.client, audit=work.audit)

    def export(self, scan_id: int, *, actor: Actor, client: str = "") -> list[dict[str, str]] | None:
        """Return a finished scan's rows for a CSV download and audit the export (it names students); None if none."""
        view = self.scans.get(scan_id)
        if view is None or view.state != "done":
            return None
        rows = view.report.get("rows", [])
        self.scan.store.audit(actor, "scan.exported", reason=actor.reason or "", client=client, scan_id=scan_id,
                              rows=len(rows))
        return rows

    def invite(self, scan_id: int, *, actor: Actor, reason: str, client: str = "") -> int:
        """Invite the students a finished scan found will loop, once per scan; return how many were invited."""
        view = self.scans.get(scan_id)
        if view is None or view.state != "done":
            raise ScanRefused("not_done")
        upns = [Upn(row["upn"]) for row in view.report.get("rows", []) if row.get("outcome") == Outcome.WILL_LOOP.value]
        if not upns:
            raise ScanRefused("nobody")
        if not self.scans.mark_invited(scan_id, len(upns), now=self.clock()):
            raise ScanRefused("already_invited")
        try:
            made = self.scan.invite(upns, actor=actor, reason=reason, source=view.source, client=client)
        except Exception:
            self.scans.unmark_invited(scan_id, now=self.clock())  # nothing was sent: the button works again
            raise
        return len(made)
