"""The kiosk table on SQLite and PostgreSQL: found by the credential's hash, revoked once, audited with the change."""
from __future__ import annotations

from datetime import timedelta

import pytest

from app.adapters.store.kiosks import KioskStore
from app.domain.actors import Actor
from app.domain.kiosks import KioskError
from app.domain.sessions import token_hash
from app.services.kiosks import KioskService
from app.services.retention import Retention, RetentionPolicy

DESK = Actor.staff("hedy.lamarr@uni.test", role="helpdesk", reason="orientation week")


@pytest.fixture
def kiosks(store, clock):
    """The kiosk service over the migrated store of tests/adapters/conftest.py (its clock is `clock`)."""
    return KioskService(KioskStore(store), store, clock=clock)


def test_an_enrolled_kiosk_is_found_by_its_credential_and_only_the_hash_is_kept(kiosks, store):
    kiosk, credential = kiosks.enrol(DESK, "  Library   3 ", client="192.0.2.7")
    assert kiosk.name == "Library 3" and kiosk.enrolled_by == DESK.id and kiosk.active
    assert kiosks.device(credential) == kiosks.table.kiosk_by_token_hash(token_hash(credential))
    assert kiosks.device("x" * 43) is None and kiosks.device(None) is None and kiosks.device("<script>") is None
    (event,) = [e for e in store.audit_events(limit=10) if e.action == "kiosk.enrol"]
    assert event.reason == "orientation week" and event.detail["kiosk"] == "Library 3"
    assert credential not in repr(store.audit_events(limit=10))


def test_revoked_once_for_good_with_its_reason(kiosks, store, clock):
    kiosk, credential = kiosks.enrol(DESK, "Library 3")
    other, _ = kiosks.enrol(DESK, "Atrium")
    revoked = kiosks.revoke(Actor.staff(DESK.id, role="helpdesk", reason="stolen"), kiosk.id)
    assert revoked.revoked_at is not None and revoked.revoke_reason == "stolen"
    assert kiosks.device(credential) is None
    with pytest.raises(KioskError):
        kiosks.revoke(Actor.staff(DESK.id, role="helpdesk", reason="again"), kiosk.id)
    assert [k.name for k in kiosks.kiosks()] == ["Atrium", "Library 3"], "working kiosks first"
    actions = [(e.action, e.outcome) for e in store.audit_events(limit=10)]
    assert ("kiosk.revoke", "ok") in actions and ("kiosk.revoke", "refused") in actions


def test_last_seen_is_written_at_most_once_a_minute(kiosks, clock):
    kiosk, credential = kiosks.enrol(DESK, "Library 3")
    first = kiosks.device(credential).last_seen_at
    clock.advance(30)
    assert kiosks.device(credential).last_seen_at == first
    clock.advance(31)
    kiosks.device(credential)
    assert kiosks.table.kiosk_by_token_hash(token_hash(credential)).last_seen_at > first


def test_an_auditor_cannot_enrol(kiosks):
    with pytest.raises(KioskError):
        kiosks.enrol(Actor.staff("katherine.johnson@uni.test", role="auditor", reason="x"), "Lab")
    assert kiosks.kiosks() == []


def test_retention_deletes_a_kiosk_revoked_longer_ago_than_the_audit_is_kept(kiosks, store, clock):
    old, _ = kiosks.enrol(DESK, "Library 3")
    recent, _ = kiosks.enrol(DESK, "Atrium")
    working, _ = kiosks.enrol(DESK, "Foyer")
    kiosks.revoke(DESK, old.id)
    clock.advance(timedelta(days=30).total_seconds())
    kiosks.revoke(DESK, recent.id)
    clock.advance(timedelta(days=340).total_seconds())
    retention = Retention(store, RetentionPolicy(audit_days=365, grant_days=365), kiosks=KioskStore(store), clock=clock)
    assert retention.purge()["kiosks"] == 1
    assert [k.name for k in kiosks.kiosks()] == ["Foyer", "Atrium"], "a working kiosk stays, however old"
    assert retention.purge()["kiosks"] == 0
