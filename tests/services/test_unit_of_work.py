"""A grant's state change and the audit event recording it commit together, or neither does (issue 8.12)."""
from __future__ import annotations

import pytest

from app.adapters.directory_embedded import EmbeddedDirectory
from app.adapters.store import AuditLog
from app.domain.actors import WORKER, Actor
from app.domain.directory import dn_key
from app.domain.grants import GrantState
from app.services.grants import GrantService
from tests.support import upgraded_store

ADA = "ada.lovelace@uni.test"


class Crash(Exception):
    """Stands for the process dying between a grant's change and its audit event."""


@pytest.fixture
def store(database_url, clock):
    with upgraded_store(database_url, clock) as s:
        yield s


@pytest.fixture
def directory(seed):
    return EmbeddedDirectory(seed)


@pytest.fixture
def grants(store, directory, seed, clock):
    return GrantService(store, directory, bypass_group_dn=seed.bypass_group_dn, clock=clock)


@pytest.fixture
def crash_on(monkeypatch):
    """Make the audit trail fail when it records `action`; every other event is written as usual."""
    real_add = AuditLog.add

    def arm(action: str) -> None:
        def add(self, actor, what, *args, **kwargs):
            if what == action:
                raise Crash(f"crashed before {what} was recorded")
            return real_add(self, actor, what, *args, **kwargs)

        monkeypatch.setattr(AuditLog, "add", add)

    yield arm
    monkeypatch.undo()


def open_for(grants, directory, upn=ADA):
    user = directory.find_user(upn)
    return grants.open_grant(upn=upn, user_dn=user.dn, entra_user_id="e-ada", actor=Actor.student(upn),
                             reason="stuck in loop")


def actions(store, grant_id=None):
    return [e.action for e in reversed(store.audit_events(grant_id=grant_id))]


def test_a_crash_before_the_intent_is_recorded_leaves_no_grant(grants, store, directory, crash_on):
    crash_on("grant.intent")
    with pytest.raises(Crash):
        open_for(grants, directory)
    assert store.grants_for(ADA) == [] and actions(store) == []


def test_a_crash_before_activation_is_recorded_leaves_the_grant_pending(grants, store, directory, crash_on):
    crash_on("grant.active")
    with pytest.raises(Crash):
        open_for(grants, directory)
    grant = store.grants_for(ADA)[0]
    assert grant.state is GrantState.PENDING and grant.activated_at is None
    assert actions(store, grant.id) == ["grant.intent", "grant.membership_added"]


@pytest.mark.parametrize("outcome", ["released", "cancelled", "expired"])
def test_a_crash_before_the_end_is_recorded_leaves_the_grant_open(grants, store, directory, seed, clock, crash_on,
                                                                   outcome):
    grant = open_for(grants, directory)
    crash_on(f"grant.{outcome}")
    with pytest.raises(Crash):
        grants.close_grant(grant.id, outcome=outcome, actor=WORKER, reason="test")
    assert store.get_grant(grant.id).state is GrantState.ACTIVE
    assert f"grant.{outcome}" not in actions(store, grant.id)
    # The membership was removed first (as always); the worker's next close ends the grant with its event.
    assert dn_key(grant.user_dn) not in {dn_key(m) for m in directory.list_members(seed.bypass_group_dn)}
    crash_on("nothing")
    ended = grants.close_grant(grant.id, outcome=outcome, actor=WORKER, reason="test")
    assert ended.state is GrantState(outcome) and actions(store, grant.id).count(f"grant.{outcome}") == 1


def test_a_crash_before_a_failure_is_recorded_leaves_the_stale_grant_pending(grants, store, directory, clock,
                                                                             crash_on):
    user = directory.find_user(ADA)
    stale, _ = store.create_grant(upn=ADA, user_dn=user.dn, entra_user_id="", actor=ADA, reason="",
                                  created_at=clock(), expires_at=clock())
    crash_on("grant.failed")
    with pytest.raises(Crash):
        grants.abandon_stale(stale.id, actor=WORKER, reason="interrupted")
    assert store.get_grant(stale.id).state is GrantState.PENDING and actions(store, stale.id) == []


def test_a_unit_of_work_commits_its_change_and_its_event_together(store, clock, directory):
    user = directory.find_user(ADA)
    with store.unit_of_work() as uow:
        grant, created = uow.grants.create(upn=ADA, user_dn=user.dn, entra_user_id="", actor=ADA, reason="",
                                           created_at=clock(), expires_at=clock())
        uow.audit.add(Actor.student(ADA), "grant.intent", ADA, grant.id)
        again, created_again = uow.grants.create(upn=ADA, user_dn=user.dn, entra_user_id="", actor=ADA,
                                                 reason="", created_at=clock(), expires_at=clock())
    assert created and not created_again and again.id == grant.id  # a refused second insert kept the first
    assert store.open_grant_for(ADA).id == grant.id and actions(store, grant.id) == ["grant.intent"]
