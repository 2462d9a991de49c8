"""The batch tables on SQLite and PostgreSQL: rows in file order, checks recorded once, ready when all are."""
from __future__ import annotations

from datetime import timedelta

from app.adapters.store import BatchStore
from app.domain.actors import WORKER, Actor
from app.domain.audit import AuditQuery
from app.domain.batch_csv import read_batch_csv
from app.domain.batches import BatchGrants, BatchState, RowCheck as Check
from app.domain.grants import GrantState

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
    assert batches.latest_grants(["ada@uni.test", None], sent.sent_at, batch_id=batch.id) == BatchGrants({})
    assert batches.latest_grants(["ada@uni.test"], None, batch_id=batch.id) == BatchGrants({"ada@uni.test": "pending"})
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


def _invite(uow, n: int, upn: str, batch_id: int, clock) -> int:
    """Write one invite of a batch straight to the store; return its id."""
    return uow.invites.add_many([{"token_hash": f"{n:064x}", "upn": upn, "sealed_token": None}], created_at=clock(),
                                created_by=DESK.id, reason="", expires_at=clock() + timedelta(days=3),
                                batch_id=batch_id)[0].id


def _grant(uow, upn: str, clock, invite_id: int | None = None, ended: GrantState | None = None):
    """Write one grant (through an invite, or the student's own) straight to the store, ended if asked."""
    grant, _ = uow.grants.create(upn=upn, user_dn=f"CN={upn}", entra_user_id="", actor=upn, reason="",
                                 created_at=clock(), expires_at=clock() + timedelta(days=3), invite_id=invite_id)
    if ended is not None:
        uow.grants.move(grant.id, ended, ended_at=clock())
    return grant


def test_a_batch_finds_the_open_grants_its_invites_led_to_and_the_batches_of_a_student(store, clock):
    batches = BatchStore(store)
    older = batches.create(DESK, label="older", file_name="", rows=read_batch_csv(b"upn\nada@uni.test\n").rows)
    newer = batches.create(DESK, label="newer", file_name="", rows=read_batch_csv(b"upn\nada@uni.test\n").rows)
    with store.unit_of_work() as uow:
        old_invite, new_invite, alan_invite = (_invite(uow, n, upn, batch, clock) for n, upn, batch in (
            (1, "ada@uni.test", older.id), (2, "ada@uni.test", newer.id), (3, "alan@uni.test", older.id)))
        grant = _grant(uow, "ada@uni.test", clock, new_invite)
        _grant(uow, "alan@uni.test", clock, alan_invite, ended=GrantState.FAILED)
    assert old_invite != new_invite
    assert batches.latest_grants(["ada@uni.test", "alan@uni.test"], None, batch_id=older.id) == BatchGrants(
        {"alan@uni.test": "failed"}, frozenset({"ada@uni.test"}))  # Ada's unlock is the newer batch's progress
    assert batches.latest_grants(["ada@uni.test", "alan@uni.test"], None, batch_id=newer.id) == BatchGrants(
        {"ada@uni.test": "pending"}, frozenset({"alan@uni.test"}))
    assert batches.open_grants_from(newer.id) == [(grant.id, "ada@uni.test")]
    assert batches.open_grants_from(older.id) == []  # Alan's grant has ended; Ada's came through the newer batch
    assert [b.label for b in batches.of_student("ada@uni.test")] == ["newer", "older"]
    assert batches.of_student("nobody@uni.test") == []


def test_a_students_own_grant_counts_for_the_batch_and_wins_over_another_invites(store, clock):
    batches = BatchStore(store)
    batch = batches.create(DESK, label="w", file_name="", rows=read_batch_csv(b"upn\nada@uni.test\n").rows)
    other = batches.create(DESK, label="other", file_name="", rows=read_batch_csv(b"upn\nada@uni.test\n").rows)
    with store.unit_of_work() as uow:
        _grant(uow, "ada@uni.test", clock, _invite(uow, 9, "ada@uni.test", other.id, clock), ended=GrantState.EXPIRED)
        _grant(uow, "ada@uni.test", clock)  # later on her own: no invite led to it
    assert batches.latest_grants(["ada@uni.test"], None, batch_id=batch.id) == BatchGrants({"ada@uni.test": "pending"})


def test_the_migration_drops_the_row_columns_nothing_wrote_and_keeps_the_rows(database_url, clock):
    from sqlalchemy import inspect, text

    from app.adapters.store import Store
    from tests.adapters.test_store import upgrade_to

    old = Store(database_url, clock=clock)
    try:
        upgrade_to(old, "0016")
        with old.engine.begin() as conn:
            conn.execute(text("INSERT INTO batches (id, label, file_name, state, created_by, created_at, rows_total,"
                              " rows_checked, check_percent, sent_by, closed_by) VALUES (7, 'w', '', 'checking',"
                              " 'desk', :t, 1, 0, 0, '', '')"), {"t": clock().replace(tzinfo=None)})
            conn.execute(text("INSERT INTO batch_rows (batch_id, line, upn, shown, mail, name, problem, checked,"
                              " diagnosis, reminders_sent) VALUES (7, 2, 'ada@uni.test', '', '', 'Ada', '', false,"
                              " '', 0)"))
        old.upgrade()
        columns = {c["name"] for c in inspect(old.engine).get_columns("batch_rows")}
        assert not columns & {"invite_id", "invited_at", "reminders_sent", "last_reminder_at"}
        (row,) = BatchStore(old).rows(7)
        assert (row.line, row.upn, row.name, row.checked) == (2, "ada@uni.test", "Ada", False)
    finally:
        old.dispose()
