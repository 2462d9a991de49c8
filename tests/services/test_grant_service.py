"""GrantService: intent first, membership, confirmation, activation; release membership first; audited."""
from __future__ import annotations

import pytest

from app.adapters.directory_embedded import EmbeddedDirectory
from app.domain.actors import WORKER, Actor
from app.domain.directory import DirectoryPermissionError, DirectoryUnavailable, dn_key
from app.domain.grants import GrantError, GrantNotFound, GrantState
from app.domain.upn import InvalidUpn
from app.services.grants import GrantService
from tests.services.helpers import ADMIN, FlakyDirectory

ADA = "ada.lovelace@uni.test"


def service(store, directory, seed, clock, **kw) -> GrantService:
    return GrantService(store, directory, bypass_group_dn=seed.bypass_group_dn, clock=clock, **kw)


def members(directory, seed) -> set[str]:
    return {dn_key(dn) for dn in directory.list_members(seed.bypass_group_dn)}


def open_for(svc, directory, upn=ADA, **kw):
    user = directory.find_user(upn)
    return svc.open_grant(upn=upn, user_dn=user.dn, entra_user_id="e-" + upn, actor=Actor.student(upn),
                          reason="stuck in loop", **kw)


def actions(store, grant_id):
    return [e.action for e in reversed(store.audit_events(grant_id=grant_id))]


def test_open_grant_adds_membership_confirms_and_activates(store, directory, seed, clock):
    svc = service(store, directory, seed, clock)
    grant = open_for(svc, directory)
    assert grant.state is GrantState.ACTIVE and grant.dc_confirmed
    assert grant.activated_at == clock() and (grant.expires_at - grant.created_at).total_seconds() == 30 * 60
    assert dn_key(grant.user_dn) in members(directory, seed)
    assert actions(store, grant.id) == ["grant.intent", "grant.membership_added", "grant.active"]


def test_open_grant_is_idempotent(store, directory, seed, clock):
    svc = service(store, directory, seed, clock)
    first = open_for(svc, directory)
    clock.advance(5)
    second = open_for(svc, directory, minutes=60)
    assert second.id == first.id and second.expires_at == first.expires_at
    assert len(store.grants_for(ADA)) == 1
    assert actions(store, first.id).count("grant.intent") == 1


def test_close_grant_removes_membership_then_records_end(store, directory, seed, clock):
    svc = service(store, directory, seed, clock)
    grant = open_for(svc, directory)
    clock.advance(60)
    ended = svc.close_grant(grant.id, outcome="cancelled", actor=Actor.student(ADA), reason="student pressed cancel")
    assert ended.state is GrantState.CANCELLED and ended.end_reason == "cancelled" and ended.ended_at == clock()
    assert dn_key(grant.user_dn) not in members(directory, seed)
    assert store.open_grant_for(ADA) is None
    event = store.audit_events(grant_id=grant.id, action="grant.cancelled")[0]
    assert event.detail == {"membership_removed": True}
    assert (event.actor_kind, event.actor, event.upn, event.reason) == ("student", ADA, ADA, "student pressed cancel")


def test_close_grant_twice_changes_nothing_the_second_time(store, directory, seed, clock):
    svc = service(store, directory, seed, clock)
    grant = open_for(svc, directory)
    first = svc.close_grant(grant.id, outcome="expired", actor=WORKER, reason="time up")
    second = svc.close_grant(grant.id, outcome="released", actor=ADMIN, reason="again")
    assert first.state is second.state is GrantState.EXPIRED and second == first
    assert len(store.audit_events(grant_id=grant.id, action="grant.released")) == 0


def test_new_grant_after_close(store, directory, seed, clock):
    svc = service(store, directory, seed, clock)
    first = open_for(svc, directory)
    svc.close_grant(first.id, outcome="released", actor=WORKER, reason="method registered")
    second = open_for(svc, directory)
    assert second.id != first.id and second.state is GrantState.ACTIVE
    assert dn_key(second.user_dn) in members(directory, seed)


def test_bad_input_changes_nothing(store, seed, clock):
    directory = EmbeddedDirectory(seed)
    svc = service(store, directory, seed, clock)
    user = directory.find_user(ADA)
    with pytest.raises(InvalidUpn):
        svc.open_grant(upn="not-an-upn", user_dn=user.dn, entra_user_id="", actor=ADMIN, reason="")
    with pytest.raises(GrantError):
        svc.open_grant(upn=ADA, user_dn=user.dn, entra_user_id="", actor=ADMIN, reason="", minutes=10_000)
    with pytest.raises(ValueError):
        svc.open_grant(upn=ADA, user_dn="", entra_user_id="", actor=ADMIN, reason="")
    with pytest.raises(GrantError):
        svc.close_grant(1, outcome="deleted", actor=ADMIN, reason="")  # type: ignore[arg-type]
    with pytest.raises(GrantNotFound):
        svc.close_grant(999, outcome="released", actor=ADMIN, reason="")
    assert store.grants_for(ADA) == [] and directory.list_members(seed.bypass_group_dn) == []
    assert store.audit_events() == []


@pytest.mark.parametrize("error", [DirectoryUnavailable("dc1 did not answer"),
                                   DirectoryPermissionError("insufficientAccessRights")])
def test_directory_failure_on_add_marks_failed_and_reraises(store, seed, clock, error):
    directory = FlakyDirectory(EmbeddedDirectory(seed), add_member=error)
    svc = service(store, directory, seed, clock)
    with pytest.raises(type(error)):
        open_for(svc, directory)
    [grant] = store.grants_for(ADA)
    assert grant.state is GrantState.FAILED and str(error) in grant.end_reason
    assert directory.inner.list_members(seed.bypass_group_dn) == []
    assert store.open_grant_for(ADA) is None  # the student may try again: no pending grant left behind
    assert actions(store, grant.id) == ["grant.intent", "grant.failed"]


def test_failure_after_add_removes_the_membership_again(store, seed, clock):
    directory = FlakyDirectory(EmbeddedDirectory(seed), confirm_membership=DirectoryUnavailable("dc timed out"))
    svc = service(store, directory, seed, clock)
    with pytest.raises(DirectoryUnavailable):
        open_for(svc, directory)
    [grant] = store.grants_for(ADA)
    assert grant.state is GrantState.FAILED
    assert directory.inner.list_members(seed.bypass_group_dn) == []
    assert directory.calls == ["find_user", "add_member", "confirm_membership", "remove_member"]


def test_release_with_ldap_down_leaves_grant_open_for_the_worker(store, seed, clock):
    inner = EmbeddedDirectory(seed)
    svc = service(store, inner, seed, clock)
    grant = open_for(svc, inner)
    flaky = FlakyDirectory(inner, remove_member=DirectoryUnavailable("no DC answered"))
    with pytest.raises(DirectoryUnavailable):
        service(store, flaky, seed, clock).close_grant(grant.id, outcome="released", actor=Actor.student(ADA), reason="done")
    assert store.get_grant(grant.id).state is GrantState.ACTIVE
    assert store.audit_events(grant_id=grant.id, action="grant.released")[0].outcome == "error"


class LaggingDirectory(FlakyDirectory):
    """A directory whose second DC has not heard of the change yet."""

    def confirm_membership(self, group_dn, member_dn, present=True, timeout_seconds=20.0):
        from app.domain.directory import MembershipCheck
        self.calls.append("confirm_membership")
        return MembershipCheck(agreeing=("dc1",), lagging=() if self.caught_up else ("dc2",))

    caught_up = False


def test_lagging_dc_is_an_honest_wait_not_a_failure(store, seed, clock):
    directory = LaggingDirectory(EmbeddedDirectory(seed))
    svc = service(store, directory, seed, clock)
    grant = open_for(svc, directory)
    assert grant.state is GrantState.ACTIVE and not grant.dc_confirmed
    assert store.audit_events(grant_id=grant.id, action="grant.active")[0].detail["lagging"] == ["dc2"]
    assert not svc.recheck_replication(grant.id, actor=WORKER).dc_confirmed
    directory.caught_up = True
    rechecked = svc.recheck_replication(grant.id, actor=WORKER)
    assert rechecked.dc_confirmed and rechecked.check_count == 2


class RecordingDirectory(FlakyDirectory):
    ttl: int | None = None

    def add_member(self, group_dn, member_dn, ttl_seconds=None):
        self.ttl = ttl_seconds
        return self.inner.add_member(group_dn, member_dn, ttl_seconds)


def test_ttl_membership_carries_the_remaining_seconds(store, seed, clock):
    directory = RecordingDirectory(EmbeddedDirectory(seed))
    grant = open_for(service(store, directory, seed, clock, use_ttl=True), directory, minutes=15)
    assert directory.ttl == 15 * 60 and grant.ttl_seconds == 15 * 60


def test_no_ttl_unless_configured(store, seed, clock):
    directory = RecordingDirectory(EmbeddedDirectory(seed))
    open_for(service(store, directory, seed, clock), directory)
    assert directory.ttl is None


@pytest.mark.samba
def test_second_dc_that_never_hears_of_the_change_is_reported_lagging(store, seed, clock, clean_bypass_group,
                                                                      samba_dc2, tmp_path):
    from tests.fixtures.samba import ca_bundle

    dc1 = clean_bypass_group
    directory = dc1.directory(urls=[dc1.url, samba_dc2.url], ca_file=ca_bundle(tmp_path / "ca.pem", dc1, samba_dc2))
    try:
        svc = service(store, directory, seed, clock, replication_wait_seconds=1.0)
        grant = open_for(svc, directory)
        assert grant.state is GrantState.ACTIVE and not grant.dc_confirmed
        event = store.audit_events(grant_id=grant.id, action="grant.active")[0]
        assert event.detail["agreeing"] == [dc1.url] and event.detail["lagging"] == [samba_dc2.url]
        svc.close_grant(grant.id, outcome="released", actor=ADMIN, reason="cleanup")
        assert dc1.members(seed.bypass_group_dn) == []
    finally:
        directory.close()
