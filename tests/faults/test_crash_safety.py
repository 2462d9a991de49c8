"""Crash safety: real portal processes SIGKILLed mid-grant and mid-release against a real Samba DC.

After a restart, ONE worker cycle (run by a fresh process) leaves no bypass membership without an active
grant and no active grant without a membership. The restart cycle runs with its clock moved forward past
the pending grace (an unlock may legitimately be in flight for a few seconds): --later.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from app.adapters.store import Store
from app.domain.directory import dn_key
from app.domain.grants import GrantState, utc_now
from tests.faults.harness import KILL_POINTS

pytestmark = [pytest.mark.samba, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
ADA = "ada.lovelace@uni.test"
LATER = "120"  # seconds: past the pending grace, far before a 30-minute grant ends


def harness(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.faults.harness", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def crash_env(request, clean_bypass_group, tmp_path):
    """Settings for the harness: the Samba DC and an empty database (SQLite, or PostgreSQL)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'crash.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database("crash")
    env = {**os.environ, **clean_bypass_group.env(), "PROOFUP_DATABASE_URL": url}
    env.pop("CI", None)
    return env, Store(url), clean_bypass_group


def assert_membership_matches_grants(store: Store, dc) -> None:
    """The invariant: bypass members == people with an active grant, and no grant left pending."""
    members = {dn_key(dn) for dn in dc.members(dc.bypass_group_dn)}
    open_grants = store.open_grants()
    active = {dn_key(g.user_dn) for g in open_grants if g.state is GrantState.ACTIVE}
    assert [g for g in open_grants if g.state is GrantState.PENDING] == []
    assert members == active, f"members {members} but active grants {active}"


@pytest.mark.parametrize("point", [p for p in KILL_POINTS if p.startswith("open:")])
def test_killed_while_granting(crash_env, point):
    env, store, dc = crash_env
    crashed = harness(env, "open", ADA, "--kill-at", point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    [grant] = store.grants_for(ADA)
    assert grant.state is GrantState.PENDING  # the intent was written before LDAP was touched
    restart = harness(env, "cycle", "--later", LATER)
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert "recovered=1" in restart.stdout
    assert_membership_matches_grants(store, dc)
    assert store.get_grant(grant.id).state is GrantState.FAILED
    assert dc.members(dc.bypass_group_dn) == []
    assert [e.action for e in store.audit_events(grant_id=grant.id)][0] == "grant.failed"
    # The student can simply try again.
    again = harness(env, "open", ADA)
    assert again.stdout.strip() == "active", again.stderr
    assert_membership_matches_grants(store, dc)
    store.dispose()


@pytest.mark.parametrize("point", [p for p in KILL_POINTS if p.startswith("close:")])
def test_killed_while_releasing(crash_env, point):
    env, store, dc = crash_env
    opened = harness(env, "open", ADA)
    assert opened.stdout.strip() == "active", opened.stderr
    crashed = harness(env, "close", ADA, "--kill-at", point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    [grant] = store.grants_for(ADA)
    assert grant.state is GrantState.ACTIVE  # the record is only updated after LDAP
    restart = harness(env, "cycle", "--later", LATER)
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert_membership_matches_grants(store, dc)
    if point == "close:after_remove":
        # The membership is gone; the grant that no longer backs anything is ended.
        assert "reconciled_ended=1" in restart.stdout
        assert store.get_grant(grant.id).state is GrantState.RELEASED
    else:
        # The release never reached LDAP: the grant is still valid and keeps its membership until its end.
        assert store.get_grant(grant.id).state is GrantState.ACTIVE
        assert dn_key(grant.user_dn) in {dn_key(m) for m in dc.members(dc.bypass_group_dn)}
    store.dispose()


def test_no_membership_outlives_its_grant_by_more_than_one_interval_across_worker_crashes(crash_env):
    """Grants end every second while the worker runs, is SIGKILLed, and restarts: each removal comes in time."""
    env, store, dc = crash_env
    interval = 1.0
    store.upgrade()
    seed_users = ["ada.lovelace@uni.test", "alan.turing@uni.test", "grace.hopper@uni.test",
                  "edsger.dijkstra@uni.test"]
    start = utc_now()
    ends: dict[str, object] = {}
    for i, upn in enumerate(seed_users):
        # Grants written as the service would leave them, with ends a few seconds apart.
        grant, _ = store.create_grant(upn=upn, user_dn=dc.user_dn(upn), entra_user_id="", actor="test",
                                      reason="invariant", created_at=start,
                                      expires_at=start + timedelta(seconds=3 + 2 * i))
        store.move_grant(grant.id, GrantState.ACTIVE, activated_at=start, dc_confirmed=True)
        ends[dn_key(grant.user_dn)] = grant.expires_at
    dc.set_members(dc.bypass_group_dn, [dc.user_dn(u) for u in seed_users])
    worker = _start_worker(env, interval)
    removed_at: dict[str, object] = {}
    restarted = False
    restart_seconds = 0.0
    deadline = time.monotonic() + 30
    try:
        while len(removed_at) < len(seed_users) and time.monotonic() < deadline:
            present = {dn_key(m) for m in dc.members(dc.bypass_group_dn)}
            now = utc_now()
            for key in ends:
                if key not in present and key not in removed_at:
                    removed_at[key] = now
            if not restarted and len(removed_at) >= 1:
                killed = time.monotonic()
                worker.send_signal(signal.SIGKILL)  # the worker dies between cycles or in one
                worker.wait(10)
                worker = _start_worker(env, interval)
                restart_seconds = time.monotonic() - killed
                restarted = True
            time.sleep(0.05)
    finally:
        worker.kill()
        worker.wait(10)
    assert restarted and set(removed_at) == set(ends)
    # One interval, plus the time a cycle and this poll take (generous for 2 cores), plus the time the
    # new worker took to start: no worker runs then, and a busy machine stretches it.
    slack = 1.0 + restart_seconds
    late = {k: (removed_at[k] - ends[k]).total_seconds() for k in ends}
    print("seconds past the end:", late)
    assert all(seconds <= interval + slack for seconds in late.values()), late
    assert [store.grants_for(u)[0].state for u in seed_users] == [GrantState.EXPIRED] * len(seed_users)
    store.dispose()


def _start_worker(env: dict[str, str], interval: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.faults.harness", "worker", "--interval", str(interval)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line == "worker ready", proc.stderr.read() if proc.poll() is not None else line
    return proc
