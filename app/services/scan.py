"""Who will loop, before MFA is switched on: predict each student's outcome for a group, an OU or a list,
and invite the ones who will loop (docs/helpdesk.md, "Who will loop")."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from app.domain.actors import Actor, ActorKind
from app.domain.prediction import OUTCOME_ORDER, Outcome, Prediction, predict, unknown
from app.domain.staff import StaffRole
from app.domain.upn import Upn
from app.services.bulk_diagnosis import BulkDiagnosisService, BulkProgress
from app.services.onboarding import NotAllowed

MAX_SCAN = 2000  # students in one scan: a whole intake (issue 12), and the most one invite round takes
GROUP, OU, LIST = "group", "ou", "list"  # where a scan's students come from


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
        found = self.bulk.diagnose_many(upns, actor=actor, progress=progress, assume_required=True)
        predictions = [predict(d) for d in found.diagnoses.values()]
        predictions += [unknown(upn, why) for upn, why in found.failures.items()]
        rank = {outcome: i for i, outcome in enumerate(OUTCOME_ORDER)}
        predictions.sort(key=lambda p: (rank[p.outcome], p.upn))
        report = ScanReport(source=source[:300], predictions=tuple(predictions), invalid=found.invalid,
                            graph_requests=found.graph_requests, sign_in_pages=found.sign_in_pages,
                            seconds=found.seconds)
        self.store.audit(actor, "scan.run", reason=actor.reason, client=client, source=report.source,
                         students=len(predictions), invalid=len(found.invalid),
                         **{outcome.value: n for outcome, n in report.counts().items()})
        return report

    def invite_will_loop(self, report: ScanReport, *, actor: Actor, reason: str, client: str = "") -> list[Any]:
        """Invite every student the report says will loop (one unit of work: all or none); audited per invite."""
        if self.invites is None:
            raise NotAllowed("no_invites")
        targets = report.will_loop
        if not targets:
            return []
        made = self.invites.invite_many(targets, actor, reason=reason, client=client)
        self.store.audit(actor, "scan.invited", reason=reason, client=client, source=report.source,
                         invited=len(made))
        return made

    @staticmethod
    def _may_scan(actor: Actor) -> None:
        """The desk's helpdesk role and admins at the CLI scan (a scan reads many students' evidence)."""
        if actor.kind is ActorKind.CLI or (actor.kind is ActorKind.STAFF and actor.role == StaffRole.HELPDESK.value):
            return
        raise NotAllowed("not_allowed")
