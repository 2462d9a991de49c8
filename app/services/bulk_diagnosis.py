"""Diagnose many students at once (a batch, a scan): the single diagnosis's evidence and rules, fetched in bulk.

Each student ends in the same `Diagnosis` that `OnboardingService.diagnose` would give (the one classify()
through onboarding.diagnosis_from); only the fetching differs: AD in searches of 100 UPNs, Graph in $batch
requests of 20 parts (users 15 to a filter with their devices, each student's methods) and the Authenticator
app's sign-ins read for the whole tenant in pages instead of one report request per student (docs/helpdesk.md,
"Who will loop").
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Callable, Sequence

from app.domain.actors import Actor, ActorKind
from app.domain.directory import dn_key
from app.domain.evidence import Evidence, GraphError
from app.domain.grants import utc_now
from app.domain.ports import Directory, Graph
from app.domain.state import Diagnosis, Policy
from app.domain.upn import InvalidUpn, Upn
from app.services.onboarding import GrantStore, NotAllowed, diagnosis_from

# Entra keeps sign-in logs for 30 days (P1/P2): an Authenticator sign-in older than that cannot be seen anyway.
SIGN_IN_DAYS = 30
MAX_STUDENTS = 5000  # one run at most: a bound on memory and on the Graph budget one desk click may spend
# Why a student could not be diagnosed (BulkDiagnosis.failures): Graph asked to wait, or failed to answer.
GRAPH_BUSY = "graph_busy"
GRAPH_UNAVAILABLE = "graph_unavailable"


@dataclass(frozen=True)
class BulkProgress:
    """How far a bulk diagnosis is: `phase` is directory | graph | classify | done; `done` of `total` students."""

    phase: str
    done: int
    total: int

    @property
    def percent(self) -> int:
        return 100 if self.phase == "done" else int(100 * self.done / self.total) if self.total else 0


@dataclass(frozen=True)
class BulkDiagnosis:
    """The outcome of diagnosing many students, and what it cost.

    `diagnoses` holds a Diagnosis per student that could be classified (unknown in AD included: missing_in_ad),
    in the order asked; `failures` names the students Graph could not answer for (GRAPH_BUSY, GRAPH_UNAVAILABLE);
    `invalid` the values that are no UPN at all. `graph_requests` counts HTTP round trips to Graph (a $batch is
    one), `sign_in_pages` the report requests among them.
    """

    diagnoses: dict[Upn, Diagnosis]
    failures: dict[Upn, str] = field(default_factory=dict)
    invalid: tuple[str, ...] = ()
    graph_requests: int = 0
    sign_in_pages: int = 0
    seconds: float = 0.0


class BulkDiagnosisService:
    """Diagnose many students for the service desk, an admin or the worker, never for a student or a visitor."""

    def __init__(self, *, directory: Directory, graph: Graph, store: GrantStore, policy: Policy,
                 clock: Callable[[], datetime] | None = None, sign_in_days: int = SIGN_IN_DAYS):
        self.directory = directory
        self.graph = graph
        self.store = store
        self.policy = policy
        self.clock = clock or utc_now
        self.sign_in_days = sign_in_days

    def diagnose_many(self, upns: Sequence[str], *, actor: Actor,
                      progress: Callable[[BulkProgress], None] | None = None,
                      assume_required: bool = False) -> BulkDiagnosis:
        """Diagnose each student once (duplicates folded), reporting progress; Graph failures per student.

        With assume_required, each student is classified as if already in the MFA-required group: what
        happens when MFA is switched on for them (the scan's prediction).
        """
        if not (actor.acts_for_others or actor.kind is ActorKind.WORKER):
            raise NotAllowed("not_allowed")
        started = time.monotonic()
        report = progress or (lambda _: None)
        wanted, invalid = parse_upns(upns)
        if len(wanted) > MAX_STUDENTS:
            raise ValueError(f"at most {MAX_STUDENTS} students in one run, not {len(wanted)}")
        report(BulkProgress("directory", 0, len(wanted)))
        users = self.directory.find_users(wanted, self._policy_groups())
        report(BulkProgress("graph", 0, len(wanted)))
        found = [u for u in wanted if u in users]
        sweep = self.graph.sweep_evidence(
            found, since=self.clock() - timedelta(days=self.sign_in_days),
            progress=lambda done, total: report(BulkProgress("graph", done, len(wanted))))
        directly = self._direct_members() if any(self.policy.mfa_required(u) for u in users.values()) else set()
        diagnoses: dict[Upn, Diagnosis] = {}
        failures: dict[Upn, str] = {}
        now = self.clock()
        for index, upn in enumerate(wanted):
            user = users.get(upn)
            evidence = sweep.evidence.get(upn) if user is not None else None
            failure = _failure(evidence)
            if failure:
                failures[upn] = failure
                continue
            is_direct = user is not None and dn_key(user.dn) in directly
            if user is not None and assume_required:
                user = replace(user, group_dns=user.group_dns | {dn_key(self.policy.required_group_dn)})
            diagnoses[upn] = diagnosis_from(upn, user, evidence, self.policy, self.store, now=now,
                                            required_directly=is_direct)
            if index % 100 == 99:
                report(BulkProgress("classify", index + 1, len(wanted)))
        report(BulkProgress("done", len(wanted), len(wanted)))
        return BulkDiagnosis(diagnoses, failures, invalid, graph_requests=sweep.requests,
                             sign_in_pages=sweep.sign_in_pages, seconds=time.monotonic() - started)

    def _policy_groups(self) -> list[str]:
        """Name the groups classify() asks about (required, bypass, privileged): the only ones read per user."""
        return [self.policy.required_group_dn, self.policy.bypass_group_dn, *self.policy.privileged_group_dns]

    def _direct_members(self) -> set[str]:
        """Return the dn_keys of the required group's direct members (one ranged read, not one probe per student)."""
        return {dn_key(dn) for dn in self.directory.list_members(self.policy.required_group_dn)}


def parse_upns(values: Sequence[str]) -> tuple[list[Upn], tuple[str, ...]]:
    """Normalise each value once (the edge): UPNs in order without duplicates, and the values that are none."""
    wanted: dict[Upn, None] = {}
    invalid: list[str] = []
    for value in values:
        try:
            wanted[Upn(value)] = None
        except InvalidUpn:
            invalid.append(str(value)[:100])
    return list(wanted), tuple(invalid)


def _failure(evidence: Evidence | None) -> str:
    """Return why Graph's evidence cannot classify a student ("" when it can), as the single diagnosis refuses to guess."""
    if evidence is None:
        return ""
    for part in ("user", "methods"):
        error: GraphError | None = evidence.errors.get(part)
        if error is not None and error.status != 404:
            return GRAPH_BUSY if error.status == 429 else GRAPH_UNAVAILABLE
    return ""

