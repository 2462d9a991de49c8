"""The desk's audit filters and the grant verbs of the console, on SQLite and PostgreSQL alike."""
from __future__ import annotations

from datetime import timedelta

from app.domain.actors import WORKER, Actor, ActorKind
from app.domain.audit import AuditQuery
from app.domain.grants import GrantState

DESK = Actor(ActorKind.STAFF, "hedy.lamarr@uni.test", role="helpdesk")
ADA, ALAN = "ada.lovelace@uni.test", "alan.turing@uni.test"


def fill(store, clock):
    store.audit(DESK, "grant.intent", ADA, reason="t1")
    clock.advance(3600)
    store.audit(WORKER, "grant.expired", ADA)
    store.audit(WORKER, "grant_x", ALAN)  # "grant." must not match this: _ is a LIKE wildcard unless escaped
    clock.advance(3600)
    store.audit(Actor.student(ALAN), "unlock.refused", ALAN, outcome="refused", refusal="privileged")


def test_filters_combine_and_a_family_matches_only_its_own_events(store, clock):
    start = clock()
    fill(store, clock)
    actions = lambda q: [e.action for e in store.search_audit(q)]  # noqa: E731
    assert actions(AuditQuery(action="grant.")) == ["grant.expired", "grant.intent"]
    assert actions(AuditQuery(upn="ADA.Lovelace@uni.test")) == ["grant.expired", "grant.intent"]
    assert actions(AuditQuery(actor=DESK.id)) == ["grant.intent"]
    assert actions(AuditQuery(outcome="refused")) == ["unlock.refused"]
    assert actions(AuditQuery(since=start + timedelta(minutes=30), until=start + timedelta(minutes=90))) == [
        "grant_x", "grant.expired"]
    assert actions(AuditQuery(action="%")) == []  # typed wildcards match themselves only


def test_keyset_pages_cover_every_event_once(store, clock):
    for i in range(7):
        store.audit(WORKER, "bench.event", None, n=i)
    first = store.search_audit(AuditQuery(), limit=3)
    second = store.search_audit(AuditQuery(), before_id=first[-1].id, limit=3)
    third = store.search_audit(AuditQuery(), before_id=second[-1].id, limit=3)
    seen = [e.detail["n"] for e in first + second + third]
    assert seen == [6, 5, 4, 3, 2, 1, 0]


def test_recent_upns_are_distinct_and_bounded_by_time(store, clock):
    fill(store, clock)
    assert sorted(store.recent_upns(clock() - timedelta(days=1), 10)) == [ADA, ALAN]
    assert store.recent_upns(clock() + timedelta(seconds=1), 10) == []


def test_an_open_grant_extends_and_an_ended_one_does_not(store, clock):
    grant, _ = store.create_grant(upn=ADA, user_dn="CN=Ada,OU=Students,DC=uni,DC=test", entra_user_id="",
                                  actor=DESK.id, reason="t", created_at=clock(),
                                  expires_at=clock() + timedelta(minutes=30))
    later = clock() + timedelta(minutes=90)
    with store.unit_of_work() as uow:
        assert uow.grants.extend(grant.id, expires_at=later).expires_at == later
    store.move_grant(grant.id, GrantState.FAILED, ended_at=clock(), end_reason="test")
    with store.unit_of_work() as uow:
        assert uow.grants.extend(grant.id, expires_at=later + timedelta(minutes=1)) is None
    assert [g.id for g in store.grants_ended_since(GrantState.FAILED, clock() - timedelta(minutes=1))] == [grant.id]
