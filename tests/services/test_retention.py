"""Retention: old audit events, ended grants and abandoned sign-ins go, a bounded chunk at a time; nothing else does."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from app.adapters.store import OutboxStore, SessionStore
from app.domain.grants import GrantState
from app.domain.mail import MailState
from app.domain.sessions import SessionKind, SessionRecord
from app.services.retention import Retention, RetentionPolicy
from app.worker import run_worker
from tests.services.helpers import ADMIN
from tests.support import upgraded_store

DAY = 86400


@pytest.fixture
def store(database_url, clock):
    """Both databases: the purges are SQL of their own (a delete with a limited subquery)."""
    with upgraded_store(database_url, clock) as s:
        yield s


def grant(store, clock, upn: str, *, ended: str | None):
    """Write a grant now; end it (released) at once unless ended is None."""
    view, _ = store.create_grant(upn=upn, user_dn=f"CN={upn},DC=uni,DC=test", entra_user_id="", actor=upn,
                                 reason="test", created_at=clock(), expires_at=clock() + timedelta(minutes=30))
    if ended:
        store.move_grant(view.id, GrantState.RELEASED, ended_at=clock(), end_reason=ended)
    return view.id


def counts(store) -> dict[str, int]:
    with store.engine.connect() as db:
        return {table: db.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
                for table in ("audit_events", "grants", "sign_in_flows")}


def test_purge_deletes_only_what_is_past_retention_in_bounded_chunks(store, clock):
    for i in range(5):
        store.audit(ADMIN, "grant.intent", upn=f"old{i}@uni.test")
    old_ended = [grant(store, clock, f"old{i}@uni.test", ended="released") for i in range(3)]
    still_open = grant(store, clock, "open@uni.test", ended=None)  # open for 100 days: never purged, whatever its age
    store.put_sign_in_flow("fresh", "sealed", ttl_seconds=101 * DAY)
    store.put_sign_in_flow("abandoned", "sealed", ttl_seconds=600)  # nobody came back within 10 minutes
    clock.advance(100 * DAY)
    store.audit(ADMIN, "grant.intent", upn="new@uni.test")
    recent = grant(store, clock, "new@uni.test", ended="released")

    retention = Retention(store, RetentionPolicy(audit_days=90, grant_days=90), chunk=2, clock=clock)
    assert retention.purge() == {"audit_events": 2, "grants": 2, "sign_in_flows": 1}
    assert retention.purge() == {"audit_events": 2, "grants": 1, "sign_in_flows": 0}
    assert retention.purge() == {"audit_events": 1, "grants": 0, "sign_in_flows": 0}
    assert retention.purge() == {"audit_events": 0, "grants": 0, "sign_in_flows": 0}

    assert [e.upn for e in store.audit_events()] == ["new@uni.test"]
    assert all(store.get_grant(g) is None for g in old_ended)
    assert store.get_grant(still_open) is not None and store.get_grant(recent) is not None
    assert store.take_sign_in_flow("fresh") == "sealed"


def test_nothing_young_enough_is_purged(store, clock):
    store.audit(ADMIN, "grant.intent", upn="a@uni.test")
    grant(store, clock, "a@uni.test", ended="expired")
    clock.advance(89 * DAY)
    before = counts(store)
    assert Retention(store, RetentionPolicy(audit_days=90, grant_days=90), clock=clock).purge() == \
        {"audit_events": 0, "grants": 0, "sign_in_flows": 0}
    assert counts(store) == before


def session(sessions, clock, token: str, *, hours: float) -> None:
    sessions.create_session(SessionRecord(token_hash=token, kind=SessionKind.STUDENT, upn=f"{token}@uni.test",
                                          display_name=token, created_at=clock(), last_seen_at=clock(),
                                          expires_at=clock() + timedelta(hours=hours)))


def sent_mail(outbox, upn: str, *, bounce: bool = False) -> None:
    outbox.queue("security_unlocked", upn=upn, to=upn, params={})
    (mail,) = outbox.claim_due(1, 60)
    if bounce:
        outbox.mark_ended(mail, MailState.BOUNCED, error="550 no such user", code=550)
    else:
        outbox.mark_sent(mail)


def test_sessions_past_their_end_and_old_mail_go_too(store, clock):
    sessions, outbox = SessionStore(store), OutboxStore(store, sender="portal@uni.test")
    session(sessions, clock, "lasting", hours=24 * 200)
    session(sessions, clock, "ended", hours=8)
    sent_mail(outbox, "old@uni.test")
    sent_mail(outbox, "bounced@uni.test", bounce=True)
    outbox.queue("security_unlocked", upn="waiting@uni.test", to="waiting@uni.test", params={})  # never sent
    clock.advance(100 * DAY)
    sent_mail(outbox, "new@uni.test")
    retention = Retention(store, RetentionPolicy(audit_days=365, grant_days=365, mail_days=90), sessions=sessions,
                          outbox=outbox, clock=clock)
    purged = retention.purge()
    assert (purged["portal_sessions"], purged["outbox"]) == (1, 2)
    assert sessions.get_session("ended") is None and sessions.get_session("lasting") is not None
    assert {state: n for state, n in outbox.counts().items() if n} == {MailState.QUEUED: 1, MailState.SENT: 1}


class NoCycles:
    """A sweeper whose cycles do nothing: the worker loop is what is under test."""

    def run_cycle(self):
        return "cycle"

    def run_confirm_pass(self):
        return None


class HeldLease:
    name = "worker"

    def acquire(self):
        return True

    def renew(self):
        return True

    def release(self):
        return None


def test_the_worker_purges_after_each_full_cycle_and_survives_a_failing_purge(store, clock):
    store.audit(ADMIN, "grant.intent", upn="old@uni.test")
    clock.advance(400 * DAY)
    retention = Retention(store, RetentionPolicy(audit_days=365, grant_days=365), clock=clock)
    assert run_worker(NoCycles(), HeldLease(), once=True, retention=retention) == ["cycle"]
    assert store.audit_events() == []

    calls = []

    class Broken:
        def purge(self):
            calls.append(1)
            raise RuntimeError("database is locked")

    stop = threading.Event()
    timer = threading.Timer(0.35, stop.set)
    timer.start()
    reports = run_worker(NoCycles(), HeldLease(), interval=0.1, stop_event=stop, retention=Broken())
    assert len(reports) >= 2 and len(calls) == len(reports)  # the loop went on after each failed purge


def test_old_scans_go_after_the_mail_days_in_chunks(store, clock):
    from app.adapters.store import ScanStore

    scans = ScanStore(store)
    old = [scans.start(source="group:x", reason="r", created_by="cli:a", now=clock() - timedelta(days=91),
                       upns=["ada.lovelace@uni.test"]) for _ in range(3)]
    young = scans.start(source="group:y", reason="r", created_by="cli:a", now=clock() - timedelta(days=89))
    retention = Retention(store, RetentionPolicy(audit_days=365, grant_days=365, mail_days=90), scans=scans,
                          chunk=2, clock=clock)
    assert retention.purge()["scans"] == 2 and retention.purge()["scans"] == 1 and retention.purge()["scans"] == 0
    assert [s.id for s in scans.recent()] == [young] and all(scans.get(i) is None for i in old)
    assert all(scans.unchecked(i, 10) == [] for i in old)  # their students went with them


def test_closed_batches_go_after_the_mail_retention_open_ones_stay(store, clock):
    from app.adapters.store import BatchStore
    from app.domain.actors import Actor
    from app.domain.batch_csv import read_batch_csv

    desk = Actor.staff("hedy.lamarr@uni.test", role="helpdesk", reason="week 48")
    batches = BatchStore(store)
    rows = read_batch_csv(b"upn\nada@uni.test\n").rows
    closed, still_open = (batches.create(desk, label=name, file_name="", rows=rows) for name in ("closed", "open"))
    batches.mark_closed(desk, closed.id)
    retention = Retention(store, RetentionPolicy(audit_days=365, grant_days=365, mail_days=90), batches=batches,
                          clock=clock)
    clock.advance(89 * DAY)
    assert retention.purge()["batches"] == 0
    clock.advance(2 * DAY)
    assert retention.purge()["batches"] == 1
    assert batches.get(closed.id) is None and batches.get(still_open.id) is not None


def test_each_worker_tick_does_the_batches_and_scans_parts_before_the_mail_and_survives_their_failure():
    order: list[str] = []

    class Batches:
        def work(self):
            order.append("batches")
            raise RuntimeError("Graph did not answer")

    class Scans:
        def work(self):
            order.append("scans")
            raise RuntimeError("the directory did not answer")

    class Mail:
        def send_due(self):
            order.append("mail")

    stop = threading.Event()
    threading.Timer(0.35, stop.set).start()
    reports = run_worker(NoCycles(), HeldLease(), interval=0.1, stop_event=stop, batches=Batches(), scans=Scans(),
                         mail=Mail())
    assert len(reports) >= 2 and order[:6] == ["batches", "scans", "mail"] * 2  # the mail still went out
