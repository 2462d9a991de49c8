"""The batch tables on SQLite and PostgreSQL: rows in file order, checks recorded once, ready when all are."""
from __future__ import annotations

from app.adapters.store import BatchStore
from app.domain.actors import WORKER, Actor
from app.domain.audit import AuditQuery
from app.domain.batch_csv import read_batch_csv
from app.domain.batches import BatchState, RowCheck as Check

DESK = Actor.staff("hedy.lamarr@uni.test", role="helpdesk", reason="week 48")
CSV = b"upn;mail\nada@uni.test;ada@mail.test\n=cmd;\nalan@uni.test;\nada@uni.test;\n"


def test_a_batch_is_written_with_its_rows_and_its_audit_event(store):
    batches = BatchStore(store)
    batch = batches.create(DESK, label="Week 48", file_name="w48.csv", rows=read_batch_csv(CSV).rows, client="10.0.0.1")
    assert (batch.state, batch.rows_total, batch.rows_checked) == (BatchState.CHECKING, 4, 2)
    rows = batches.rows(batch.id)
    assert [(r.line, r.upn, r.problem, r.checked) for r in rows] == [
        (2, "ada@uni.test", "", False), (3, None, "formula", True), (4, "alan@uni.test", "", False),
        (5, "ada@uni.test", "duplicate", True)]
    (event,) = store.search_audit(AuditQuery(action="batch.uploaded"))
    assert event.actor == "hedy.lamarr@uni.test" and event.detail["batch_id"] == batch.id
    assert event.detail["rows"] == 4 and event.reason == "week 48"


def test_checks_are_recorded_once_and_the_batch_turns_ready(store):
    batches = BatchStore(store)
    batch = batches.create(DESK, label="w", file_name="", rows=read_batch_csv(CSV).rows)
    first, second = batches.unchecked(batch.id, 10)
    assert batches.unchecked(batch.id, 1) == [first]
    half = batches.record_checks(WORKER, batch.id, {first.id: Check("", "stuck/half_registered", "")})
    assert half.state is BatchState.CHECKING and half.rows_checked == 3
    again = batches.record_checks(WORKER, batch.id, {first.id: Check("registered")})  # a repeat changes nothing
    assert again.rows_checked == 3 and batches.rows(batch.id)[0].problem == ""
    done = batches.record_checks(WORKER, batch.id, {second.id: Check("", "stuck/unregistered", "alan@mail.test")})
    assert done.state is BatchState.READY and done.rows_checked == 4 and done.checked_at is not None
    rows = batches.rows(batch.id)
    assert [r.selected for r in rows] == [True, False, True, False] and rows[2].mail == "alan@mail.test"
    assert batches.record_checks(WORKER, batch.id, {first.id: Check("x")}) is None  # no longer checking
    assert [b.id for b in batches.in_state(BatchState.READY)] == [batch.id] and batches.get(batch.id).label == "w"


def test_sent_and_closed_happen_once_each_and_grants_are_read_since_the_send(store, clock):
    from datetime import timedelta

    batches = BatchStore(store)
    batch = batches.create(DESK, label="w", file_name="", rows=read_batch_csv(b"upn\nada@uni.test\n").rows)
    assert batches.mark_sent(DESK, batch.id) is None  # still checking
    (row,) = batches.unchecked(batch.id, 5)
    batches.record_checks(WORKER, batch.id, {row.id: Check("")})
    with store.unit_of_work() as uow:  # a grant from before the batch was sent does not count
        uow.grants.create(upn="ada@uni.test", user_dn="CN=Ada", entra_user_id="", actor="ada@uni.test", reason="",
                          created_at=clock(), expires_at=clock() + timedelta(minutes=30))
    clock.advance(60)
    sent = batches.mark_sent(DESK, batch.id, client="10.0.0.1")
    assert sent.state is BatchState.SENT and sent.sent_by == DESK.id and batches.mark_sent(DESK, batch.id) is None
    assert batches.latest_grants(["ada@uni.test", None], sent.sent_at) == {}
    assert batches.latest_grants(["ada@uni.test"], None) == {"ada@uni.test": "pending"}
    closed = batches.mark_closed(DESK, batch.id)
    assert closed.state is BatchState.CLOSED and batches.mark_closed(DESK, batch.id) is None
    assert [e.action for e in store.search_audit(AuditQuery(action="batch."))][:2] == ["batch.closed", "batch.sent"]


def test_closed_batches_are_purged_with_their_rows_after_the_retention(store, clock):
    batches = BatchStore(store)
    closed = batches.create(DESK, label="old", file_name="", rows=read_batch_csv(CSV).rows)
    batches.mark_closed(DESK, closed.id)
    still_open = batches.create(DESK, label="open", file_name="", rows=read_batch_csv(CSV).rows)
    assert batches.purge_closed(clock(), 10) == 0  # closed just now: kept
    clock.advance(3600)
    assert batches.purge_closed(clock(), 10) == 1
    assert batches.get(closed.id) is None and batches.rows(closed.id) == []
    assert batches.get(still_open.id) is not None and len(batches.rows(still_open.id)) == 4


def test_a_batch_finds_the_open_grants_its_invites_led_to_and_the_batches_of_a_student(store, clock):
    from datetime import timedelta

    from app.domain.grants import GrantState

    batches = BatchStore(store)
    older = batches.create(DESK, label="older", file_name="", rows=read_batch_csv(b"upn\nada@uni.test\n").rows)
    newer = batches.create(DESK, label="newer", file_name="", rows=read_batch_csv(b"upn\nada@uni.test\n").rows)
    later = clock() + timedelta(days=3)
    with store.unit_of_work() as uow:
        old_invite, new_invite, alan_invite = (uow.invites.add_many(
            [{"token_hash": f"{n:064x}", "upn": upn, "sealed_token": None}], created_at=clock(), created_by=DESK.id,
            reason="", expires_at=later, batch_id=batch)[0].id
            for n, upn, batch in ((1, "ada@uni.test", older.id), (2, "ada@uni.test", newer.id),
                                  (3, "alan@uni.test", older.id)))
        grant, _ = uow.grants.create(upn="ada@uni.test", user_dn="CN=Ada", entra_user_id="", actor="ada@uni.test",
                                     reason="", created_at=clock(), expires_at=later, invite_id=new_invite)
        ended, _ = uow.grants.create(upn="alan@uni.test", user_dn="CN=Alan", entra_user_id="", actor="alan@uni.test",
                                     reason="", created_at=clock(), expires_at=later, invite_id=alan_invite)
        uow.grants.move(ended.id, GrantState.FAILED, ended_at=clock())
    assert old_invite != new_invite
    assert batches.open_grants_from(newer.id) == [(grant.id, "ada@uni.test")]
    assert batches.open_grants_from(older.id) == []  # Alan's grant has ended; Ada's came through the newer batch
    assert [b.label for b in batches.of_student("ada@uni.test")] == ["newer", "older"]
    assert batches.of_student("nobody@uni.test") == []
