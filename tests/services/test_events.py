"""Events: use cases send them after the commit; subscribers hear them without the use cases knowing who listens."""
from __future__ import annotations

import pytest

from app.adapters.directory_embedded import EmbeddedDirectory
from app.domain.actors import WORKER, Actor, ActorKind
from app.domain.grants import GrantState
from app.services.events import CycleEvent, Events, GrantEvent
from app.services.grants import GrantService
from app.services.sweeper import Sweeper
from tests.services.helpers import AUTHENTICATOR, RecordingBudget, ScriptedGraph

ADA = "ada.lovelace@uni.test"
SIGNALS = ("grant_opened", "grant_activated", "grant_released", "grant_expired", "grant_cancelled", "grant_failed",
           "sign_in_succeeded", "sign_in_failed", "refused", "worker_cycle_done")


class Listener:
    """Subscribe to every signal of an Events and keep what arrives, in order."""

    def __init__(self, events: Events, store=None):
        self.heard: list[tuple[str, object]] = []
        self.store = store
        self.seen_in_store: list[GrantState | None] = []
        for name in SIGNALS:
            getattr(events, name).connect(self._recorder(name), weak=False)

    def _recorder(self, name):
        def receive(_sender, event):
            self.heard.append((name, event))
            if self.store is not None and isinstance(event, GrantEvent):
                self.seen_in_store.append(self.store.get_grant(event.grant.id).state)
        return receive

    def names(self) -> list[str]:
        return [name for name, _ in self.heard]


@pytest.fixture
def directory(seed):
    return EmbeddedDirectory(seed)


@pytest.fixture
def events():
    return Events()


@pytest.fixture
def grants(store, directory, seed, clock, events):
    return GrantService(store, directory, bypass_group_dn=seed.bypass_group_dn, clock=clock, events=events)


def open_for(grants, directory, upn=ADA, actor=None):
    user = directory.find_user(upn)
    return grants.open_grant(upn=upn, user_dn=user.dn, entra_user_id="e-" + upn, actor=actor or Actor.student(upn),
                             reason="stuck in loop")


@pytest.mark.parametrize("outcome", ["released", "cancelled", "expired"])
def test_a_grant_tells_each_step_after_it_committed(grants, store, directory, events, outcome):
    listener = Listener(events, store)
    admin = Actor.cli("root", reason="ticket 4711")
    grant = open_for(grants, directory, actor=admin)
    grants.close_grant(grant.id, outcome=outcome, actor=WORKER, reason="test end")
    assert listener.names() == ["grant_opened", "grant_activated", f"grant_{outcome}"]
    opened, activated, ended = (event for _, event in listener.heard)
    assert opened.grant.state is GrantState.PENDING and opened.actor == admin and opened.reason == "stuck in loop"
    assert activated.grant.state is GrantState.ACTIVE and activated.actor.kind is ActorKind.CLI
    assert ended.grant.state is GrantState(outcome) and ended.actor == WORKER and ended.reason == "test end"
    # Each subscriber already finds the change in the database: events go out after the commit.
    assert listener.seen_in_store == [GrantState.PENDING, GrantState.ACTIVE, GrantState(outcome)]


def test_no_event_for_what_did_not_change(grants, directory, events):
    grant = open_for(grants, directory)
    listener = Listener(events)
    assert open_for(grants, directory).id == grant.id  # the second click finds the open grant
    grants.close_grant(grant.id, outcome="cancelled", actor=Actor.student(ADA), reason="pressed cancel")
    grants.close_grant(grant.id, outcome="released", actor=WORKER, reason="again")  # already ended
    assert listener.names() == ["grant_cancelled"]


def test_an_undone_unlock_is_told_as_failed(grants, store, directory, clock, events):
    listener = Listener(events)
    user = directory.find_user(ADA)
    stale, _ = store.create_grant(upn=ADA, user_dn=user.dn, entra_user_id="", actor=ADA, reason="",
                                  created_at=clock(), expires_at=clock())
    grants.abandon_stale(stale.id, actor=WORKER, reason="interrupted")
    assert listener.names() == ["grant_failed"]
    assert listener.heard[0][1].grant.end_reason == "interrupted"


def test_a_failing_subscriber_neither_undoes_the_change_nor_silences_the_others(grants, store, directory, events):
    def broken(_sender, event):
        raise RuntimeError("the mail server is down")

    events.grant_opened.connect(broken, weak=False)
    listener = Listener(events)
    grant = open_for(grants, directory)
    assert grant.state is GrantState.ACTIVE and store.open_grant_for(ADA).id == grant.id
    assert listener.names() == ["grant_opened", "grant_activated"]


def test_the_worker_tells_each_full_cycle(store, directory, seed, clock, events, grants):
    listener = Listener(events)
    graph = ScriptedGraph()
    grant = open_for(grants, directory)
    graph.methods["e-" + ADA] = (AUTHENTICATOR,)
    clock.advance(60)
    sweeper = Sweeper(store, directory, graph, grants, RecordingBudget(), bypass_group_dn=seed.bypass_group_dn,
                      clock=clock, check_every_seconds=10)
    sweeper.run_cycle()
    assert listener.names()[-2:] == ["grant_released", "worker_cycle_done"]
    cycle = listener.heard[-1][1]
    assert isinstance(cycle, CycleEvent) and cycle.counts["released"] == 1 and cycle.counts["errors"] == 0
    assert store.get_grant(grant.id).state is GrantState.RELEASED


def test_two_portals_never_share_subscribers(store, directory, seed, clock):
    first, second = Events(), Events()
    heard = Listener(first)
    grants = GrantService(store, directory, bypass_group_dn=seed.bypass_group_dn, clock=clock, events=second)
    open_for(grants, directory)
    assert heard.names() == []
