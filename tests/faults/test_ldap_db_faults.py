"""LDAP down in mid-cycle (a real Samba DC stopped), a DC at a dead port, a locked database.

In every case the worker records what failed, leaves each grant open while its membership may still
exist (so the next cycle retries), and the following cycle brings records and the group back together.
"""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from app.adapters.directory_embedded import EmbeddedDirectory
from app.adapters.store import Store
from app.domain.actors import Actor
from app.domain.directory import dn_key
from app.domain.grants import GrantState
from app.services.grants import GrantService
from app.services.sweeper import Sweeper
from tests.services.helpers import FakeClock, RecordingBudget

STUDENTS = ("ada.lovelace@uni.test", "alan.turing@uni.test", "grace.hopper@uni.test")


def wire(store, directory, seed, clock):
    grants = GrantService(store, directory, bypass_group_dn=seed.bypass_group_dn, clock=clock,
                          replication_wait_seconds=1.0)
    sweeper = Sweeper(store, directory, None, grants, RecordingBudget(), bypass_group_dn=seed.bypass_group_dn,
                      clock=clock)
    return grants, sweeper


def open_all(grants, directory, minutes=5):
    out = []
    for upn in STUDENTS:
        user = directory.find_user(upn)
        out.append(grants.open_grant(upn=upn, user_dn=user.dn, entra_user_id="", actor=Actor.student(upn), reason="stuck",
                                     minutes=minutes))
    return out


def assert_agree(store, members: list[str]) -> None:
    active = {dn_key(g.user_dn) for g in store.open_grants() if g.state is GrantState.ACTIVE}
    assert {dn_key(m) for m in members} == active


class StopsDcAfterFirstRemoval:
    """The real directory; the DC is stopped right after the first membership removal of a cycle."""

    def __init__(self, inner, dc):
        self.inner, self.dc, self.armed = inner, dc, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def remove_member(self, group_dn, member_dn):
        removed = self.inner.remove_member(group_dn, member_dn)
        if self.armed:
            self.armed = False
            self.dc.stop()
        return removed


@pytest.mark.samba
@pytest.mark.slow
def test_dc_stopping_in_mid_cycle(clean_bypass_group, tmp_path, seed):
    dc, clock = clean_bypass_group, FakeClock()
    store = Store(f"sqlite:///{tmp_path / 'ldap.sqlite3'}", clock=clock)
    store.upgrade()
    ldap = dc.directory(timeout=2.0)
    directory = StopsDcAfterFirstRemoval(ldap, dc)
    grants, sweeper = wire(store, directory, seed, clock)
    opened = open_all(grants, directory)
    clock.advance(5 * 60)
    directory.armed = True
    try:
        report = sweeper.run_cycle()
        assert report.expired == 1 and len(report.errors) >= 2
        states = [store.get_grant(g.id).state for g in opened]
        assert states == [GrantState.EXPIRED, GrantState.ACTIVE, GrantState.ACTIVE]  # honest: still in the group
        errors = store.audit_events(action="worker.error")
        assert errors and all(e.outcome == "error" for e in errors)
        assert any("reconcile" in e.detail["step"] for e in errors)
    finally:
        dc.start()
    clock.advance(30)
    report = sweeper.run_cycle()
    assert report.expired == 2 and not report.errors, report.errors
    assert dc.members(dc.bypass_group_dn) == []
    assert_agree(store, dc.members(dc.bypass_group_dn))
    ldap.close()
    store.dispose()


@pytest.mark.samba
def test_dc_at_a_dead_port_changes_nothing(clean_bypass_group, tmp_path, seed):
    dc, clock = clean_bypass_group, FakeClock()
    store = Store(f"sqlite:///{tmp_path / 'dead.sqlite3'}", clock=clock)
    store.upgrade()
    live = dc.directory()
    grants, _ = wire(store, live, seed, clock)
    opened = open_all(grants, live)
    dead = dc.directory(urls=["ldaps://127.0.0.1:1"], timeout=1.0)
    _, sweeper = wire(store, dead, seed, clock)
    clock.advance(5 * 60)
    report = sweeper.run_cycle()
    assert report.expired == 0 and len(report.errors) == len(STUDENTS) + 1  # each grant, and the reconcile
    assert all(store.get_grant(g.id).state is GrantState.ACTIVE for g in opened)
    assert len(dc.members(dc.bypass_group_dn)) == len(STUDENTS)
    _, sweeper = wire(store, live, seed, clock)
    assert sweeper.run_cycle().expired == len(STUDENTS)
    assert dc.members(dc.bypass_group_dn) == []
    for d in (live, dead):
        d.close()
    store.dispose()


def hold_write_lock(path) -> sqlite3.Connection:
    """Take SQLite's write lock from another connection, as a long admin transaction would."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE leases SET holder = holder")
    return conn


def expired_grants_on_sqlite(tmp_path, seed, busy_timeout_seconds):
    """Grants past their end on an SQLite file with the given busy timeout; return the parts and the file."""
    path, clock = tmp_path / "locked.sqlite3", FakeClock()
    store = Store(f"sqlite:///{path}", clock=clock, busy_timeout_seconds=busy_timeout_seconds)
    store.upgrade()
    directory = EmbeddedDirectory(seed)
    grants, sweeper = wire(store, directory, seed, clock)
    opened = open_all(grants, directory)
    clock.advance(5 * 60)
    return path, clock, store, directory, sweeper, opened


def test_database_locked_longer_than_busy_timeout(tmp_path, seed):
    path, clock, store, directory, sweeper, opened = expired_grants_on_sqlite(tmp_path, seed, 0.3)
    blocker = hold_write_lock(path)
    try:
        report = sweeper.run_cycle()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert report.expired == 0 and len(report.errors) >= len(STUDENTS)
    assert all("locked" in e for e in report.errors[:len(STUDENTS)])
    # Memberships were removed first, records could not be written: the grants stay open, to be retried.
    assert all(store.get_grant(g.id).state is GrantState.ACTIVE for g in opened)
    assert directory.list_members(seed.bypass_group_dn) == []
    clock.advance(30)
    report = sweeper.run_cycle()
    assert report.expired == len(STUDENTS) and not report.errors
    assert store.open_grants() == []
    expired = store.audit_events(action="grant.expired")
    assert len(expired) == len(STUDENTS) and all(e.detail["membership_removed"] is False for e in expired)
    store.dispose()


def test_database_locked_briefly_only_slows_the_cycle(tmp_path, seed):
    path, _, store, directory, sweeper, _ = expired_grants_on_sqlite(tmp_path, seed, 5.0)
    blocker = hold_write_lock(path)
    release = threading.Timer(0.5, lambda: (blocker.execute("ROLLBACK"), blocker.close()))
    release.start()
    started = time.monotonic()
    report = sweeper.run_cycle()
    release.join()
    assert report.expired == len(STUDENTS) and not report.errors
    assert time.monotonic() - started >= 0.4  # it waited for the lock instead of failing
    assert directory.list_members(seed.bypass_group_dn) == [] and store.open_grants() == []
    store.dispose()
