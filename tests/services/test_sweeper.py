"""One worker cycle: expire, recover, confirm in bulk, reconcile; per-grant failures never stop the cycle."""
from __future__ import annotations

from datetime import timedelta

import pytest

from app.adapters.directory_embedded import EmbeddedDirectory
from app.domain.actors import Actor
from app.domain.directory import DirectoryUnavailable, dn_key
from app.domain.evidence import GraphThrottled, GraphUnavailable
from app.domain.grants import GrantState
from app.domain.ports import DIRECTORY
from app.services.grants import GrantService
from app.services.sweeper import Sweeper
from tests.services.helpers import ADMIN, AUTHENTICATOR, PASSWORD, TAP, FlakyDirectory, RecordingBudget, ScriptedGraph

ADA, ALAN, GRACE = "ada.lovelace@uni.test", "alan.turing@uni.test", "grace.hopper@uni.test"


class World:
    """A store, a directory, a scripted Graph and the services over them."""

    def __init__(self, store, directory, seed, clock):
        self.store, self.directory, self.seed, self.clock = store, directory, seed, clock
        self.graph = ScriptedGraph()
        self.budget = RecordingBudget()
        self.grants = GrantService(store, directory, bypass_group_dn=seed.bypass_group_dn, clock=clock,
                                   replication_wait_seconds=1.0)
        self.sweeper = Sweeper(store, directory, self.graph, self.grants, self.budget,
                               bypass_group_dn=seed.bypass_group_dn, clock=clock, pending_grace_seconds=60)

    def open(self, upn, minutes=30):
        user = self.directory.find_user(upn)
        return self.grants.open_grant(upn=upn, user_dn=user.dn, entra_user_id="e-" + upn, actor=Actor.student(upn),
                                      reason="stuck", minutes=minutes)

    def members(self) -> set[str]:
        return {dn_key(dn) for dn in self.directory.list_members(self.seed.bypass_group_dn)}

    def dn(self, upn) -> str:
        return self.directory.find_user(upn).dn


@pytest.fixture
def world(store, directory, seed, clock):
    return World(store, directory, seed, clock)


def test_expired_grant_loses_its_membership(world):
    grant = world.open(ADA, minutes=5)
    world.clock.advance(5 * 60)
    report = world.sweeper.run_cycle()
    assert report.expired == 1 and not report.errors
    assert world.store.get_grant(grant.id).state is GrantState.EXPIRED
    assert dn_key(grant.user_dn) not in world.members()
    assert world.store.audit_events(grant_id=grant.id, action="grant.expired")[0].actor == "worker"


def test_grant_not_yet_past_its_end_is_left_alone(world):
    grant = world.open(ADA, minutes=5)
    world.clock.advance(5 * 60 - 1)
    report = world.sweeper.run_cycle()
    assert report.expired == 0 and world.store.get_grant(grant.id).state is GrantState.ACTIVE
    assert dn_key(grant.user_dn) in world.members()


def test_strong_method_releases_in_bulk_and_weak_ones_do_not(world):
    ada, alan, grace = world.open(ADA), world.open(ALAN), world.open(GRACE)
    world.graph.methods = {ada.entra_user_id: (PASSWORD, AUTHENTICATOR), alan.entra_user_id: (PASSWORD, TAP),
                           grace.entra_user_id: (PASSWORD,)}
    report = world.sweeper.run_cycle()
    assert world.graph.calls == [[ada.entra_user_id, alan.entra_user_id, grace.entra_user_id]]  # one bulk call
    assert (report.checked, report.confirmed, report.released) == (3, 1, 1)
    released = world.store.get_grant(ada.id)
    assert released.state is GrantState.RELEASED and released.end_reason == "released"
    assert world.members() == {dn_key(alan.user_dn), dn_key(grace.user_dn)}
    assert "microsoftAuthenticator" in world.store.audit_events(grant_id=ada.id, action="grant.released")[0].reason
    assert world.store.get_grant(alan.id).check_count == 1


def test_checks_are_spaced_out(world):
    grant = world.open(ADA)
    world.sweeper.run_cycle()
    world.clock.advance(world.sweeper.check_every_seconds * 0.7)  # a second worker cycle in the same period
    world.sweeper.run_cycle()
    assert len(world.graph.calls) == 1
    world.clock.advance(world.sweeper.check_every_seconds * 0.3 - 0.5)  # next cycle starts a little early
    world.sweeper.run_cycle()
    assert world.graph.calls == [[grant.entra_user_id]] * 2


def test_throttled_users_are_recorded_and_everyone_backs_off(world):
    ada, alan = world.open(ADA), world.open(ALAN)
    world.graph.failures = {ada.entra_user_id: GraphThrottled("Too many requests", status=429, retry_after=7.5)}
    world.graph.methods = {alan.entra_user_id: (AUTHENTICATOR,)}
    report = world.sweeper.run_cycle()
    assert report.released == 1 and len(report.errors) == 1 and "Too many requests" in report.errors[0]
    assert world.budget.back_offs == [(DIRECTORY, 7.5)]
    throttled = world.store.get_grant(ada.id)
    assert throttled.state is GrantState.ACTIVE and throttled.check_note == "budget"  # the page says "still checking"
    assert world.store.audit_events(action="worker.graph_throttled")[0].detail["retry_after"] == 7.5


def test_graph_outage_does_not_stop_expiry_or_reconcile(world, seed):
    grant = world.open(ADA, minutes=5)
    world.open(ALAN)
    world.graph.raise_on_call = GraphUnavailable("503 Service Unavailable", status=503)
    world.directory.add_member(seed.bypass_group_dn, world.dn(GRACE))  # added by hand: reported
    world.clock.advance(5 * 60)
    report = world.sweeper.run_cycle()
    assert report.expired == 1 and world.store.get_grant(grant.id).state is GrantState.EXPIRED
    assert any("503" in e for e in report.errors)
    assert world.store.open_grant_for(ALAN).check_note == "graph_unavailable"
    assert report.foreign_members == (world.dn(GRACE),)


def test_pending_grant_left_by_a_crash_is_undone_after_the_grace(world, seed):
    # What a crash between "add member" and "mark active" leaves behind.
    user = world.directory.find_user(ADA)
    grant, _ = world.store.create_grant(upn=ADA, user_dn=user.dn, entra_user_id="e", actor=ADA, reason="",
                                        created_at=world.clock(), expires_at=world.clock() + timedelta(minutes=30))
    world.directory.add_member(seed.bypass_group_dn, user.dn)
    world.clock.advance(30)
    report = world.sweeper.run_cycle()
    assert report.recovered == 0 and dn_key(user.dn) in world.members()  # an unlock may still be in flight
    world.clock.advance(31)
    report = world.sweeper.run_cycle()
    assert report.recovered == 1 and world.members() == set()
    failed = world.store.get_grant(grant.id)
    assert failed.state is GrantState.FAILED and "interrupted" in failed.end_reason
    assert world.store.open_grant_for(ADA) is None


def test_reconcile_removes_what_the_portal_added_and_reports_the_rest(world, seed):
    old = world.open(ADA)
    world.grants.close_grant(old.id, outcome="released", actor=ADMIN, reason="done")
    world.directory.add_member(seed.bypass_group_dn, old.user_dn)  # e.g. a release whose LDAP write was lost
    world.directory.add_member(seed.bypass_group_dn, world.dn(GRACE))  # added by an admin by hand
    kept = world.open(ALAN)
    report = world.sweeper.run_cycle()
    assert report.reconciled_removed == 1 and report.foreign_members == (world.dn(GRACE),)
    assert world.members() == {dn_key(world.dn(GRACE)), dn_key(kept.user_dn)}
    check = world.store.last_bypass_check()  # what /metrics reports, whichever instance answers the scrape
    assert (report.members_without_grant, check.without_grant, check.members) == (1, 1, 2)
    assert world.store.audit_events(action="reconcile.removed")[0].detail["member_dn"] == old.user_dn
    world.sweeper.run_cycle()
    assert len(world.store.audit_events(action="reconcile.foreign_members")) == 1  # reported once, not every cycle
    assert dn_key(world.dn(GRACE)) in world.members()


def test_a_member_the_worker_could_not_remove_counts_as_without_grant(store, seed, clock):
    flaky = FlakyDirectory(EmbeddedDirectory(seed))
    w = World(store, flaky, seed, clock)
    old = w.open(ADA)
    w.grants.close_grant(old.id, outcome="released", actor=ADMIN, reason="done")
    flaky.add_member(seed.bypass_group_dn, old.user_dn)
    flaky.failures = {"remove_member": DirectoryUnavailable("dc1: connection refused")}
    report = w.sweeper.run_cycle()
    assert report.reconciled_removed == 0 and report.foreign_members == () and report.members_without_grant == 1
    assert store.last_bypass_check().without_grant == 1
    flaky.failures = {}
    assert w.sweeper.run_cycle().reconciled_removed == 1 and store.last_bypass_check().without_grant == 0


def test_active_grant_whose_membership_vanished_is_ended(world, seed):
    grant = world.open(ADA)
    world.directory.remove_member(seed.bypass_group_dn, grant.user_dn)  # an admin removed it, or a crash
    report = world.sweeper.run_cycle()
    assert report.reconciled_ended == 0  # fresh: the listing DC may lag behind the one written to
    world.clock.advance(world.sweeper.pending_grace_seconds)
    report = world.sweeper.run_cycle()
    assert report.reconciled_ended == 1
    assert world.store.get_grant(grant.id).state is GrantState.RELEASED


def test_ldap_down_for_one_step_is_recorded_and_retried_next_cycle(store, seed, clock):
    inner = EmbeddedDirectory(seed)
    flaky = FlakyDirectory(inner)
    w = World(store, flaky, seed, clock)
    ada, alan = w.open(ADA, minutes=5), w.open(ALAN, minutes=60)
    w.graph.methods = {alan.entra_user_id: (AUTHENTICATOR,)}
    clock.advance(5 * 60)
    flaky.failures = {"remove_member": DirectoryUnavailable("dc1: connection refused")}
    first_seen = clock()
    report = w.sweeper.run_cycle()
    assert report.expired == 0 and report.released == 0 and len(report.errors) >= 2
    assert store.get_grant(ada.id).state is GrantState.ACTIVE  # still open: the worker will retry
    assert store.audit_events(action="worker.error")[0].outcome == "error"
    flaky.failures = {}
    clock.advance(30)
    report = w.sweeper.run_cycle()
    assert report.expired == 1 and report.released == 1 and not report.errors
    assert inner.list_members(seed.bypass_group_dn) == []
    released = store.get_grant(alan.id)  # the metric counts from the first sighting, across the failed attempt
    assert released.method_seen_at == first_seen and released.ended_at - released.method_seen_at == timedelta(seconds=30)
    assert store.get_grant(ada.id).method_seen_at is None  # expired: no method was ever seen


def test_checks_the_budget_postpones_are_deferred_not_errors(world):
    grant = world.open(ADA)
    world.graph.failures = {grant.entra_user_id: GraphThrottled("methods not checked: budget", 429, "budget")}
    report = world.sweeper.run_cycle()
    assert report.deferred == 1 and report.errors == [] and world.budget.back_offs == []
    assert world.store.get_grant(grant.id).last_checked_at is None  # due again next cycle


def test_a_grant_is_checked_every_cycle_when_cycles_are_one_check_period_apart(world):
    grant = world.open(ADA)
    slow_graph = world.graph.methods_for

    def graph_taking_two_seconds(ids):
        world.clock.advance(2)  # a cycle takes time; the next one still starts one period after this one
        return slow_graph(ids)

    world.graph.methods_for = graph_taking_two_seconds
    for jitter in (0.0, -0.01, 0.02, -0.03):
        started = world.clock()
        world.sweeper.run_cycle()
        world.clock.now = started + timedelta(seconds=world.sweeper.check_every_seconds + jitter)
    assert world.graph.calls == [[grant.entra_user_id]] * 4


def test_cycle_checks_are_capped_by_the_workers_share_of_the_budget(store, seed, clock):
    from app.services.sweeper import checks_per_cycle_for

    assert checks_per_cycle_for(5) == 250 and checks_per_cycle_for(30) == 1500 and checks_per_cycle_for(0.1) == 20
    w = World(store, EmbeddedDirectory(seed), seed, clock)
    w.sweeper.max_checks_per_cycle = 2
    grants = [w.open(upn) for upn in (ADA, ALAN, GRACE)]
    w.sweeper.run_cycle()
    clock.advance(w.sweeper.check_every_seconds)
    w.sweeper.run_cycle()
    ids = [g.entra_user_id for g in grants]
    assert w.graph.calls == [ids[:2], [ids[2], ids[0]]]  # the one left out goes first next time


def test_a_grant_the_student_says_is_finished_is_checked_first_even_before_it_is_due(store, seed, clock):
    w = World(store, EmbeddedDirectory(seed), seed, clock)
    w.sweeper.max_checks_per_cycle = 1
    ada, alan = w.open(ADA), w.open(ALAN)
    w.sweeper.run_confirm_pass()  # checks Ada (the older); Alan waits
    assert store.want_check(ada.id, clock())  # "I have finished" a moment after her check
    w.graph.methods = {ada.entra_user_id: (AUTHENTICATOR,)}
    assert w.sweeper.run_confirm_pass().released == 1
    assert w.graph.calls == [[ada.entra_user_id], [ada.entra_user_id]]
    w.sweeper.run_confirm_pass()
    assert w.graph.calls[-1] == [alan.entra_user_id]


def test_confirm_pass_releases_confirmed_grants_and_leaves_expiry_to_the_full_cycle(world):
    ada, alan = world.open(ADA, minutes=5), world.open(ALAN, minutes=30)
    world.graph.methods = {ada.entra_user_id: (AUTHENTICATOR,), alan.entra_user_id: (AUTHENTICATOR,)}
    world.clock.advance(5 * 60)  # Ada's grant has ended: expiring it (with its audit) is the full cycle's job
    report = world.sweeper.run_confirm_pass()
    assert world.graph.calls == [[alan.entra_user_id]]
    assert (report.checked, report.released, report.expired) == (1, 1, 0)
    assert world.store.get_grant(alan.id).state is GrantState.RELEASED
    assert world.store.get_grant(ada.id).state is GrantState.ACTIVE
    assert world.sweeper.run_cycle().expired == 1
    assert world.store.get_grant(ada.id).state is GrantState.EXPIRED and world.members() == set()


def test_confirm_passes_check_a_grant_no_more_often_than_its_check_period(world):
    grant = world.open(ADA)
    world.sweeper.run_confirm_pass()
    world.clock.advance(world.sweeper.check_every_seconds * 0.5)
    world.sweeper.run_confirm_pass()
    world.sweeper.run_cycle()
    assert world.graph.calls == [[grant.entra_user_id]]
    world.clock.advance(world.sweeper.check_every_seconds * 0.5)
    world.sweeper.run_confirm_pass()
    assert world.graph.calls == [[grant.entra_user_id]] * 2


def test_confirm_pass_checks_are_capped_by_the_workers_share_per_pass(store, seed, clock):
    from app.services.sweeper import checks_per_cycle_for

    w = World(store, EmbeddedDirectory(seed), seed, clock)
    frequent = Sweeper(store, w.directory, w.graph, w.grants, w.budget, bypass_group_dn=seed.bypass_group_dn,
                       clock=clock, check_every_seconds=30, pass_every_seconds=5)
    # Six passes per check period share the worker's half of the budget for that period, not six halves.
    assert frequent.max_checks_per_cycle == checks_per_cycle_for(5) < checks_per_cycle_for(30)
    frequent.max_checks_per_cycle = 2
    grants = [w.open(upn) for upn in (ADA, ALAN, GRACE)]
    assert frequent.run_confirm_pass().checked == 2
    assert frequent.run_confirm_pass().checked == 1  # the one left out goes next pass
    ids = [g.entra_user_id for g in grants]
    assert w.graph.calls == [ids[:2], ids[2:]]


def test_worker_releases_a_confirmed_grant_within_one_confirm_interval(tmp_path, seed):
    import threading
    import time

    from app.adapters.store import Store
    from app.adapters.lease import Lease
    from app.worker import run_worker

    store = Store(f"sqlite:///{tmp_path / 'live.sqlite3'}")  # real time: the worker's loop runs for real
    store.upgrade()
    directory = EmbeddedDirectory(seed)
    graph = ScriptedGraph()
    grants = GrantService(store, directory, bypass_group_dn=seed.bypass_group_dn, replication_wait_seconds=1.0)
    confirm = 0.3
    sweeper = Sweeper(store, directory, graph, grants, RecordingBudget(), bypass_group_dn=seed.bypass_group_dn,
                      check_every_seconds=confirm, pass_every_seconds=confirm)
    user = directory.find_user(ADA)
    grant = grants.open_grant(upn=ADA, user_dn=user.dn, entra_user_id="e-ada", actor=Actor.student(ADA), reason="stuck")
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(sweeper, Lease(store, ttl_seconds=120)),
                              kwargs={"interval": 60, "confirm_interval": confirm, "stop_event": stop})
    worker.start()
    try:
        time.sleep(2 * confirm)  # the first full cycle has run; the next is a minute away
        graph.methods = {"e-ada": (AUTHENTICATOR,)}
        registered = time.monotonic()
        while store.get_grant(grant.id).state is GrantState.ACTIVE and time.monotonic() - registered < 5:
            time.sleep(0.02)
        released_after = time.monotonic() - registered
    finally:
        stop.set()
        worker.join(5)
    assert store.get_grant(grant.id).state is GrantState.RELEASED
    assert released_after < confirm + 0.5  # one confirm interval plus the pass itself, not the full 60 s
    assert dn_key(user.dn) not in {dn_key(dn) for dn in directory.list_members(seed.bypass_group_dn)}
    store.dispose()
