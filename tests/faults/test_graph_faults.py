"""Graph faults from the simulator (429 with Retry-After, 503, hung answers) while the worker confirms in bulk.

Real parts: the simulator's Graph over https, the GraphClient adapter, the database budget. The sweeper
records each failure and goes on; nothing is lost or leaked; the budget holds every instance back for
the Retry-After; the audit trail says what happened.
"""
from __future__ import annotations

import time

import pytest

from app.adapters.budget import DatabaseBudget
from app.adapters.directory_embedded import EmbeddedDirectory
from app.adapters.graph import GraphClient
from app.adapters.store import Store
from app.domain.actors import Actor
from app.domain.directory import dn_key
from app.domain.grants import GrantState
from app.domain.ports import DIRECTORY
from app.services.grants import GrantService
from app.services.sweeper import Sweeper
from tests.services.helpers import FakeClock

pytestmark = pytest.mark.slow
STUDENTS = ("ada.lovelace@uni.test", "alan.turing@uni.test", "grace.hopper@uni.test")
BATCH = "/v1.0/$batch"


class Portal:
    """The worker's parts wired to the simulator, with a clock the test moves for grant deadlines."""

    def __init__(self, simulator, database_url: str, seed, graph_timeout: float = 20.0):
        self.sim, self.seed, self.clock = simulator, seed, FakeClock()
        self.store = Store(database_url, clock=self.clock)
        self.store.upgrade()
        self.budget = DatabaseBudget(self.store)
        self.graph = GraphClient(simulator.entra_authority, simulator.graph_client_id,
                                 simulator.secret(simulator.graph_client_id), simulator.graph_url,
                                 ca_file=simulator.ca_file, budget=self.budget, timeout=graph_timeout)
        self.directory = EmbeddedDirectory(seed)
        self.grants = GrantService(self.store, self.directory, bypass_group_dn=seed.bypass_group_dn,
                                   clock=self.clock)
        self.sweeper = Sweeper(self.store, self.directory, self.graph, self.grants, self.budget,
                               bypass_group_dn=seed.bypass_group_dn, clock=self.clock, check_every_seconds=0)

    def open(self, upn: str, minutes: int = 30):
        user = self.directory.find_user(upn)
        return self.grants.open_grant(upn=upn, user_dn=user.dn, entra_user_id=self.seed.user(upn).object_id,
                                      actor=Actor.student(upn), reason="stuck", minutes=minutes)

    def members(self) -> set[str]:
        return {dn_key(dn) for dn in self.directory.list_members(self.seed.bypass_group_dn)}

    def batches_sent_since(self, seq: int) -> int:
        return sum(1 for r in self.sim.requests_log(seq) if r.get("path", "").endswith("/$batch"))


@pytest.fixture
def portal(simulator, tmp_path, seed):
    simulator.clear_faults()
    simulator.reset_throttle()
    p = Portal(simulator, f"sqlite:///{tmp_path / 'faults.sqlite3'}", seed)
    yield p
    simulator.clear_faults()
    p.store.dispose()


def test_429_with_retry_after_is_recorded_waited_out_by_everyone_then_checked(portal, simulator):
    grants = [portal.open(upn) for upn in STUDENTS]
    simulator.add_fault(BATCH, "429", seconds=3, count=1)
    report = portal.sweeper.run_cycle()
    assert report.checked == 0 and len(report.errors) == len(STUDENTS)
    assert all("429" in e or "Too many" in e for e in report.errors), report.errors
    assert 2.0 < portal.budget.blocked_for(DIRECTORY) <= 3.0  # Graph's Retry-After, shared through the database
    assert all(portal.store.get_grant(g.id).state is GrantState.ACTIVE for g in grants)
    assert portal.members() == {dn_key(g.user_dn) for g in grants}  # nothing released on a failure
    assert portal.store.audit_events(action="worker.graph_throttled")[0].detail["retry_after"] == 3

    # Another instance (own store connection, same database) holds back too: no request reaches Graph.
    other = Portal(simulator, portal.store.url, portal.seed)
    seq = simulator.last_seq()
    assert other.budget.take(DIRECTORY, 1, wait_seconds=0) is False
    assert portal.batches_sent_since(seq) == 0

    time.sleep(portal.budget.blocked_for(DIRECTORY) + 0.1)
    report = portal.sweeper.run_cycle()
    assert report.checked == len(STUDENTS) and not report.errors
    other.store.dispose()


def test_503_is_recorded_and_the_cycle_goes_on(portal, simulator):
    expiring = portal.open(STUDENTS[0], minutes=5)
    waiting = portal.open(STUDENTS[1])
    portal.clock.advance(5 * 60)
    simulator.add_fault(BATCH, "503", count=1)
    report = portal.sweeper.run_cycle()
    assert report.expired == 1 and portal.store.get_grant(expiring.id).state is GrantState.EXPIRED
    joined = " ".join(report.errors).lower()
    assert "503" in joined or "unavailable" in joined, report.errors
    assert portal.store.audit_events(action="worker.graph_error")[0].outcome == "error"
    assert portal.store.get_grant(waiting.id).state is GrantState.ACTIVE
    assert portal.members() == {dn_key(waiting.user_dn)}
    report = portal.sweeper.run_cycle()
    assert report.checked == 1 and not report.errors


def test_hung_graph_costs_one_timeout_not_the_cycle(simulator, tmp_path, seed):
    simulator.clear_faults()
    portal = Portal(simulator, f"sqlite:///{tmp_path / 'hang.sqlite3'}", seed, graph_timeout=2.0)
    try:
        expiring = portal.open(STUDENTS[0], minutes=5)
        waiting = portal.open(STUDENTS[1])
        portal.clock.advance(5 * 60)
        simulator.add_fault(BATCH, "hang", seconds=8, count=1)
        started = time.monotonic()
        report = portal.sweeper.run_cycle()
        took = time.monotonic() - started
        assert took < 7.0, f"a hung Graph held the cycle for {took:.1f} s"
        assert report.expired == 1 and report.errors
        assert portal.store.get_grant(expiring.id).state is GrantState.EXPIRED
        assert portal.store.get_grant(waiting.id).state is GrantState.ACTIVE
        assert "did not answer" in " ".join(report.errors), report.errors
        assert portal.store.audit_events(action="worker.graph_error")[0].detail["users"] == 1
    finally:
        simulator.clear_faults()
        portal.store.dispose()
