"""ScanService: who may scan, the report's order and counts, and an invite round that needs invites set up."""
from __future__ import annotations

import pytest

from app.domain.actors import WORKER, Actor
from app.domain.prediction import OUTCOME_ORDER, Outcome
from app.domain.state import Policy
from app.services.bulk_diagnosis import BulkDiagnosisService
from app.services.onboarding import NotAllowed
from app.services.scan import GROUP, ScanService

DESK = Actor.staff("hedy.lamarr@uni.test", role="helpdesk", reason="intake 2026")


@pytest.fixture
def scan(directory, simulated_graph, store, seed, clock):
    policy = Policy(required_group_dn=seed.required_group_dn, bypass_group_dn=seed.bypass_group_dn,
                    privileged_group_dns=(seed.privileged_group_dn,))
    bulk = BulkDiagnosisService(directory=directory, graph=simulated_graph, store=store, policy=policy, clock=clock)
    return ScanService(directory=directory, bulk=bulk, store=store)


def test_the_report_lists_who_will_loop_first_and_counts_every_outcome(scan, seed):
    upns = scan.students_in(GROUP, seed.required_group_dn)
    report = scan.scan(upns + ["not a upn"], actor=DESK, source=f"group:{seed.required_group_dn}")
    ranks = [OUTCOME_ORDER.index(p.outcome) for p in report.predictions]
    assert ranks == sorted(ranks) and report.predictions[0].outcome is Outcome.WILL_LOOP
    assert report.will_loop == ("ada.lovelace@uni.test", "alan.turing@uni.test", "edsger.dijkstra@uni.test")
    assert sum(report.counts().values()) == len(upns) and report.invalid == ("not a upn",)
    assert report.complete


@pytest.mark.parametrize("actor", [Actor.staff("katherine.johnson@uni.test", role="auditor", reason="look"),
                                   WORKER, Actor.student("ada.lovelace@uni.test")])
def test_only_the_helpdesk_role_and_admins_scan(scan, store, actor):
    with pytest.raises(NotAllowed):
        scan.scan(["ada.lovelace@uni.test"], actor=actor, source="list:x")
    assert store.audit_events(action="scan.run") == []


def test_without_invites_set_up_nobody_is_invited(scan):
    report = scan.scan(["ada.lovelace@uni.test"], actor=DESK, source="list:x")
    with pytest.raises(NotAllowed):
        scan.invite_will_loop(report, actor=DESK, reason="intake")


def test_more_than_a_scan_takes_is_refused_before_graph(scan, simulator):
    scan.max_students = 2
    seq = simulator.last_seq()
    with pytest.raises(ValueError):
        scan.scan(["a@uni.test", "b@uni.test", "c@uni.test"], actor=DESK, source="list:x")
    assert [e for e in simulator.requests_log(seq) if e["path"].startswith("/v1.0")] == []
