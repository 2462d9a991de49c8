"""The scan's prediction: each outcome read off the one classification, with its evidence."""
from __future__ import annotations

from datetime import timedelta

import pytest

from app.domain.evidence import GraphError
from app.domain.prediction import OUTCOME_ORDER, Outcome, predict, unknown
from app.domain.state import classify
from app.domain.upn import Upn
from tests.unit.test_state import ADMINS, POLICY, REQUIRED, UPN, WHEN, evidence, grant, student


def predicted(user, ev, **grants):
    return predict(classify(UPN, user, ev, POLICY, **grants))


@pytest.mark.parametrize(("user", "ev", "grants", "outcome", "reason"), [
    (student(REQUIRED), evidence(sign_ins=3), {}, Outcome.WILL_LOOP, "half_registered"),
    (student(REQUIRED), evidence(devices=1), {}, Outcome.WILL_LOOP, "half_registered"),
    (student(REQUIRED), evidence(devices=1), {"last_grant": grant("expired")}, Outcome.WILL_LOOP, "half_registered"),
    (student(REQUIRED), evidence(), {}, Outcome.WILL_REGISTER, "unregistered"),
    (student(REQUIRED), evidence(), {"last_grant": grant("expired")}, Outcome.WILL_REGISTER, "unregistered"),
    (student(REQUIRED), evidence("phone", sign_ins=2), {}, Outcome.ALREADY_REGISTERED, "has_strong_method"),
    (student(REQUIRED), evidence("fido2"), {"last_grant": grant("released")}, Outcome.ALREADY_REGISTERED,
     "grant_released"),
    (student(REQUIRED), evidence(sign_ins=1), {"open_grant": grant("active")}, Outcome.IN_PROGRESS, "grant_open"),
    (None, None, {}, Outcome.SKIPPED, "missing_in_ad"),
    (student(REQUIRED, ADMINS), evidence(sign_ins=2), {}, Outcome.SKIPPED, "privileged"),
    (student(REQUIRED, enabled=False), evidence(sign_ins=2), {}, Outcome.SKIPPED, "disabled"),
    (student(REQUIRED), evidence(in_entra=False), {}, Outcome.SKIPPED, "missing_in_entra"),
    (student(), evidence(sign_ins=2), {}, Outcome.SKIPPED, "not_in_required_group"),
])
def test_each_outcome_follows_the_classification(user, ev, grants, outcome, reason):
    prediction = predicted(user, ev, **grants)
    assert (prediction.outcome, prediction.reason) == (outcome, reason)
    assert prediction.will_loop == (outcome is Outcome.WILL_LOOP)


def test_unread_sign_ins_without_a_device_cannot_say_will_register():
    ev = evidence(errors={"sign_ins": GraphError("busy", 429)})
    assert predicted(student(REQUIRED), ev).outcome is Outcome.UNKNOWN
    with_device = evidence(devices=1, errors={"sign_ins": GraphError("busy", 429)})
    assert predicted(student(REQUIRED), with_device).outcome is Outcome.WILL_LOOP  # a device is enough


def test_the_evidence_is_carried_in_counts_and_names():
    ev = evidence("phone", "password", sign_ins=2, devices=1)
    object.__setattr__(ev.authenticator_sign_ins[1], "created", WHEN + timedelta(days=1))
    prediction = predicted(student(REQUIRED), ev)
    assert (prediction.sign_ins, prediction.last_sign_in) == (2, WHEN + timedelta(days=1))
    assert prediction.devices == ("Pixel",) and prediction.methods == ("phone",)
    assert prediction.display_name == "Ada Lovelace" and prediction.upn == Upn(UPN)


def test_a_student_graph_could_not_answer_for_is_unknown():
    prediction = unknown(Upn(UPN), "graph_busy")
    assert (prediction.outcome, prediction.reason, prediction.sign_ins) == (Outcome.UNKNOWN, "graph_busy", 0)


def test_the_report_order_names_every_outcome_once_will_loop_first():
    assert set(OUTCOME_ORDER) == set(Outcome) and len(OUTCOME_ORDER) == len(Outcome)
    assert OUTCOME_ORDER[0] is Outcome.WILL_LOOP
