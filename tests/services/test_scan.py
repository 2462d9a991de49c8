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


def test_the_worker_runs_a_queued_scan_a_chunk_a_tick_and_audits_it_once(scan, store, seed, clock):
    from app.adapters.store import ScanStore
    from app.services.scan import ScanJobs

    jobs = ScanJobs(scan, ScanStore(store), clock=clock, chunk=2)
    upns = scan.students_in(GROUP, seed.required_group_dn)
    scan_id = jobs.start(GROUP, seed.required_group_dn, actor=DESK, client="192.0.2.7")
    queued = jobs.scans.get(scan_id)
    assert (queued.state, queued.done, queued.total) == ("running", 0, len(upns))  # nothing asked of Graph yet
    done = []
    while jobs.scans.get(scan_id).state == "running":
        assert jobs.work() <= 2
        done.append(jobs.scans.get(scan_id).done)
        assert len(done) <= len(upns) // 2 + 2, "the scan never finished"
    assert done[:-1] == sorted(done[:-1]) and done[0] == 2  # progress written chunk by chunk
    finished = jobs.scans.get(scan_id)
    rows = finished.report["rows"]
    assert sorted(r["upn"] for r in rows) == sorted(upns)  # each student once
    assert [r["upn"] for r in rows if r["outcome"] == "will_loop"] == list(scan.scan(upns, actor=DESK,
                                                                                      source="list:x").will_loop)
    assert finished.report["graph_requests"] > 0 and finished.report["counts"]["will_loop"] == 3
    runs = [e for e in store.audit_events(action="scan.run") if e.detail["source"].startswith("group:")]
    assert len(runs) == 1 and (runs[0].actor, runs[0].reason, runs[0].detail["students"]) == (DESK.id, "intake 2026",
                                                                                             len(upns))
    assert jobs.work() == 0 and len(store.audit_events(action="scan.run")) == 2  # a done scan is left alone


def test_a_chunk_recorded_twice_counts_once(store, clock):
    from app.adapters.store import ScanStore

    scans = ScanStore(store)
    scan_id = scans.start(source="list", reason="r", created_by=DESK.id, now=clock(),
                          upns=["ada.lovelace@uni.test", "alan.turing@uni.test"])
    row = {"upn": "ada.lovelace@uni.test", "outcome": "will_loop"}
    for expected in (1, 0):
        assert scans.record_chunk(scan_id, {row["upn"]: row}, graph_requests=1, sign_in_pages=0, seconds=1.0,
                                  now=clock()) == expected
    view = scans.get(scan_id)
    assert view.done == 1 and scans.unchecked(scan_id, 10) == ["alan.turing@uni.test"]
    assert scans.rows(scan_id) == [row]


def test_a_directory_outage_mid_scan_loses_nothing_the_next_tick_goes_on_and_a_long_one_ends_it(scan, store, seed,
                                                                                                clock, monkeypatch):
    from app.adapters.store import ScanStore
    from app.domain.directory import DirectoryUnavailable
    from app.services.scan import GIVE_UP_AFTER, ScanJobs

    jobs = ScanJobs(scan, ScanStore(store), clock=clock, chunk=2)
    scan_id = jobs.start(GROUP, seed.required_group_dn, actor=DESK)
    assert jobs.work() == 2
    find_users = scan.bulk.directory.find_users

    def down(*args, **kwargs):
        raise DirectoryUnavailable("LDAP did not answer")

    monkeypatch.setattr(scan.bulk.directory, "find_users", down)
    assert jobs.work() == 0
    waiting = jobs.scans.get(scan_id)
    assert (waiting.state, waiting.error, jobs.scans.checked(scan_id)) == ("running", "unavailable", 2)

    monkeypatch.setattr(scan.bulk.directory, "find_users", find_users)  # the directory is back
    assert jobs.work() == 2 and jobs.scans.get(scan_id).error == ""

    monkeypatch.setattr(scan.bulk.directory, "find_users", down)
    clock.advance(GIVE_UP_AFTER.total_seconds() + 60)
    assert jobs.work() == 0
    ended = jobs.scans.get(scan_id)
    assert (ended.state, ended.error) == ("failed", "unavailable") and jobs.work() == 0


def test_only_the_worker_holding_the_lease_runs_a_scan(scan, store, seed, clock):
    from app.adapters.lease import Lease
    from app.adapters.store import ScanStore
    from app.services.scan import ScanJobs
    from app.worker import run_worker

    class NoCycles:
        def run_cycle(self):
            return None

        def run_confirm_pass(self):
            return None

    jobs = ScanJobs(scan, ScanStore(store), clock=clock, chunk=2)
    scan_id = jobs.start(GROUP, seed.required_group_dn, actor=DESK)
    holder = Lease(store, holder="worker-a:1", ttl_seconds=60)
    assert holder.acquire()
    run_worker(NoCycles(), Lease(store, holder="worker-b:2", ttl_seconds=60), once=True, scans=jobs)
    assert jobs.scans.checked(scan_id) == 0  # the standby ran nothing
    run_worker(NoCycles(), holder, once=True, scans=jobs)
    assert jobs.scans.checked(scan_id) == 2


def test_a_tick_predicts_one_chunk_of_the_oldest_scan_only(scan, store, seed, clock):
    from app.adapters.store import ScanStore
    from app.services.scan import LIST, ScanJobs

    jobs = ScanJobs(scan, ScanStore(store), clock=clock, chunk=2)
    first = jobs.start(LIST, ["ada.lovelace@uni.test", "alan.turing@uni.test", "grace.hopper@uni.test"], actor=DESK)
    second = jobs.start(LIST, ["edsger.dijkstra@uni.test"], actor=DESK)
    assert jobs.work() == 2 and (jobs.scans.checked(first), jobs.scans.checked(second)) == (2, 0)
    assert jobs.work() == 1 and jobs.scans.get(first).state == "done" and jobs.scans.checked(second) == 0
    assert jobs.work() == 1 and jobs.scans.get(second).state == "done"
