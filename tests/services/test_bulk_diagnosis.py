"""BulkDiagnosisService: many students, the same Diagnosis the single diagnosis gives (real Graph client and simulator)."""
from __future__ import annotations

import pytest

from app.domain.actors import WORKER, Actor
from app.domain.state import Policy, Reason, State
from app.services.bulk_diagnosis import GRAPH_UNAVAILABLE, BulkDiagnosisService
from app.services.grants import GrantService
from app.services.onboarding import NotAllowed, OnboardingService

DESK = Actor.staff("hedy.lamarr@uni.test", role="helpdesk", reason="weekly batch")
NOBODY = "nobody@uni.test"


@pytest.fixture
def graph(simulated_graph):
    return simulated_graph


@pytest.fixture
def policy(seed):
    return Policy(required_group_dn=seed.required_group_dn, bypass_group_dn=seed.bypass_group_dn,
                  privileged_group_dns=(seed.privileged_group_dn,))


@pytest.fixture
def grants(store, directory, seed, clock):
    return GrantService(store, directory, bypass_group_dn=seed.bypass_group_dn, clock=clock)


def bulk(directory, graph, store, policy, clock) -> BulkDiagnosisService:
    return BulkDiagnosisService(directory=directory, graph=graph, store=store, policy=policy, clock=clock)


def test_every_student_gets_the_diagnosis_the_single_one_gives(directory, graph, store, policy, clock, grants, seed):
    alan = directory.find_user("alan.turing@uni.test")
    grants.open_grant(upn=alan.upn, user_dn=alan.dn, entra_user_id="e-alan", actor=DESK, reason="test", minutes=30)
    single = OnboardingService(directory=directory, graph=graph, store=store, grants=grants, policy=policy,
                               clock=clock)
    upns = [u.upn for u in seed.users] + [NOBODY]
    result = bulk(directory, graph, store, policy, clock).diagnose_many(upns, actor=DESK)
    assert list(result.diagnoses) == upns and not result.failures and not result.invalid
    for upn in upns:
        one, many = single.diagnose(upn), result.diagnoses[upn]
        assert (many.state, many.reason) == (one.state, one.reason), upn
        assert (many.mfa_required, many.mfa_required_directly, many.in_bypass, many.unlocks_in_window) == (
            one.mfa_required, one.mfa_required_directly, one.in_bypass, one.unlocks_in_window), upn
        assert many.entra_user_id == one.entra_user_id, upn
    seen = {u: (d.state, d.reason) for u, d in result.diagnoses.items()}
    assert seen["ada.lovelace@uni.test"] == (State.STUCK, Reason.HALF_REGISTERED)
    assert seen["grace.hopper@uni.test"] == (State.STUCK, Reason.UNREGISTERED)
    assert seen["alan.turing@uni.test"] == (State.UNLOCKED, Reason.GRANT_OPEN)
    assert seen["radia.perlman@uni.test"] == (State.INELIGIBLE, Reason.MISSING_IN_ENTRA)
    assert seen[NOBODY] == (State.INELIGIBLE, Reason.MISSING_IN_AD)
    assert result.graph_requests == 1 and result.sign_in_pages == 1  # 12 in AD: one $batch of 12 + 1 + 1 parts


def test_duplicates_fold_and_values_that_are_no_upn_are_named(directory, graph, store, policy, clock):
    result = bulk(directory, graph, store, policy, clock).diagnose_many(
        [" ADA.Lovelace@uni.test", "ada.lovelace@uni.test", "not a upn", "=cmd|' /C calc'!A0"], actor=DESK)
    assert list(result.diagnoses) == ["ada.lovelace@uni.test"]
    assert result.invalid == ("not a upn", "=cmd|' /C calc'!A0")


def test_progress_goes_through_the_phases_to_done(directory, graph, store, policy, clock, seed):
    seen = []
    bulk(directory, graph, store, policy, clock).diagnose_many([u.upn for u in seed.users], actor=WORKER,
                                                               progress=seen.append)
    phases = [p.phase for p in seen]
    assert phases[0] == "directory" and phases[-1] == "done" and "graph" in phases
    assert seen[-1].percent == 100 and seen[-1].done == seen[-1].total == len(seed.users)
    assert [p.done for p in seen if p.phase == "graph"] == sorted(p.done for p in seen if p.phase == "graph")


def test_as_if_required_predicts_what_mfa_will_do(directory, graph, store, policy, clock):
    service = bulk(directory, graph, store, policy, clock)
    upn = "margaret.hamilton@uni.test"  # not in the MFA-required group yet
    assert service.diagnose_many([upn], actor=DESK).diagnoses[upn].state == State.NOT_REQUIRED
    predicted = service.diagnose_many([upn], actor=DESK, assume_required=True).diagnoses[upn]
    assert (predicted.state, predicted.reason) == (State.STUCK, Reason.UNREGISTERED)
    assert predicted.mfa_required and not predicted.mfa_required_directly


def test_graph_down_fails_the_students_it_could_not_answer_for_and_guesses_nothing(
        directory, graph, store, policy, clock, simulator):
    simulator.add_fault("/v1.0/$batch", "503", count=10)
    result = bulk(directory, graph, store, policy, clock).diagnose_many(
        ["ada.lovelace@uni.test", "barbara.liskov@uni.test", NOBODY], actor=DESK)
    assert result.failures == {"ada.lovelace@uni.test": GRAPH_UNAVAILABLE, "barbara.liskov@uni.test": GRAPH_UNAVAILABLE}
    assert list(result.diagnoses) == [NOBODY]  # unknown in AD: no Graph needed to say so


@pytest.mark.parametrize("actor", [Actor.student("ada.lovelace@uni.test"), Actor.visitor("192.0.2.1")])
def test_students_and_visitors_may_not_diagnose_others(directory, graph, store, policy, clock, actor):
    with pytest.raises(NotAllowed):
        bulk(directory, graph, store, policy, clock).diagnose_many(["ada.lovelace@uni.test"], actor=actor)
