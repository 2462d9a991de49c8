"""Who will loop once MFA is switched on: a student's predicted outcome, read off their diagnosis; pure logic.

The diagnosis is made as if the student were already in the MFA-required group (BulkDiagnosisService with
assume_required), so the prediction adds no rule of its own: it only names what classify() decided.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from app.domain.state import Diagnosis, Reason, State
from app.domain.upn import Upn


class Outcome(str, Enum):
    """What happens to a student when MFA is switched on for them."""

    ALREADY_REGISTERED = "already_registered"  # has a strong method: MFA just works
    WILL_LOOP = "will_loop"  # signed in to the Authenticator app or has a device, but no method: the loop
    WILL_REGISTER = "will_register"  # no trace at all: registers normally at the first MFA prompt
    IN_PROGRESS = "in_progress"  # an unlock is open right now: already being helped
    SKIPPED = "skipped"  # not a case for the portal (unknown, disabled, privileged, out of scope)
    UNKNOWN = "unknown"  # Graph could not tell (busy or down): scan again later


# Outcomes listed first in a report: the ones the desk acts on.
OUTCOME_ORDER = (Outcome.WILL_LOOP, Outcome.UNKNOWN, Outcome.WILL_REGISTER, Outcome.IN_PROGRESS,
                 Outcome.ALREADY_REGISTERED, Outcome.SKIPPED)


@dataclass(frozen=True)
class Prediction:
    """One student's predicted outcome and the evidence behind it (counts and names, never a secret)."""

    upn: Upn
    outcome: Outcome
    reason: str  # the diagnosis's reason (e.g. half_registered, privileged) or why it is unknown
    display_name: str = ""
    mail: str = ""
    sign_ins: int = 0  # Authenticator app sign-ins in the window read
    last_sign_in: datetime | None = None
    devices: tuple[str, ...] = ()  # registered devices' names
    methods: tuple[str, ...] = ()  # strong methods' kinds

    @property
    def will_loop(self) -> bool:
        return self.outcome is Outcome.WILL_LOOP


def predict(diagnosis: Diagnosis) -> Prediction:
    """Name the outcome a diagnosis made as if MFA were required foretells, with its evidence."""
    evidence, user = diagnosis.evidence, diagnosis.user
    sign_ins = evidence.authenticator_sign_ins if evidence else ()
    moments = [s.created for s in sign_ins if s.created is not None]
    facts = dict(
        display_name=user.display_name if user else "",
        mail=user.mail if user else "",
        sign_ins=len(sign_ins),
        last_sign_in=max(moments) if moments else None,
        devices=tuple(d.display_name or d.id for d in evidence.devices) if evidence else (),
        methods=tuple(sorted({m.kind for m in evidence.strong_methods})) if evidence else (),
    )
    outcome, reason = _outcome(diagnosis)
    return Prediction(upn=diagnosis.upn, outcome=outcome, reason=reason, **facts)


def unknown(upn: Upn, why: str) -> Prediction:
    """Return the prediction for a student Graph could not answer for (`why`: graph_busy, graph_unavailable)."""
    return Prediction(upn=upn, outcome=Outcome.UNKNOWN, reason=why)


def _outcome(diagnosis: Diagnosis) -> tuple[Outcome, str]:
    state, reason, evidence = diagnosis.state, diagnosis.reason, diagnosis.evidence
    if state in (State.REGISTERED, State.COMPLETED):
        return Outcome.ALREADY_REGISTERED, reason.value
    if state is State.UNLOCKED:
        return Outcome.IN_PROGRESS, reason.value
    if state in (State.STUCK, State.EXPIRED) and evidence is not None:
        if evidence.loop_traces:
            return Outcome.WILL_LOOP, Reason.HALF_REGISTERED.value
        if "sign_ins" in evidence.errors:
            return Outcome.UNKNOWN, "sign_ins_unread"  # no device, but the sign-ins could not be read
        return Outcome.WILL_REGISTER, Reason.UNREGISTERED.value
    return Outcome.SKIPPED, reason.value
