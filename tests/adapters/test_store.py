"""The store against real databases: SQLite file and a throw-away PostgreSQL server (database_url)."""
from __future__ import annotations

import socket
import threading
from datetime import timedelta

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError

from alembic.script import ScriptDirectory

from app.adapters.store import MIGRATIONS_DIR, REDACTED, Store, schema_head
from app.domain.actors import WORKER, Actor
from app.domain.grants import GrantState
from app.domain.upn import InvalidUpn
from tests.support import fresh_python, run_in_threads, upgraded_store

DN = "CN=Ada Lovelace,OU=Students,DC=uni,DC=test"


def make_grant(store, clock, upn="Ada.Lovelace@uni.test", dn=DN, minutes=30):
    return store.create_grant(upn=upn, user_dn=dn, entra_user_id="e-ada", actor="ada", reason="stuck",
                              created_at=clock(), expires_at=clock() + timedelta(minutes=minutes))


def test_upgrade_creates_every_table_and_is_repeatable(store):
    store.upgrade()  # second run: nothing to do, no error
    tables = set(inspect(store.engine).get_table_names())
    assert {"grants", "audit_events", "leases", "rate_budget", "sign_in_flows", "outbox", "portal_sessions",
            "bypass_checks", "alembic_version"} <= tables
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head


def test_the_schema_head_read_from_the_files_is_alembics():
    assert schema_head() == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def test_an_upgrade_in_a_child_leaves_alembic_out_of_this_process(database_url):
    """`proofup serve` and `proofup worker` upgrade in a forked child: Alembic never stays in them, /readyz reads
    the revision without it."""
    found = fresh_python("""
        import json, os, sys
        from app.adapters.store import Store, schema_head
        from app.health import readiness

        store = Store(os.environ["T_URL"])
        store.upgrade_in_child()
        print(json.dumps([store.schema_revision(), schema_head(), readiness(store),
                          sorted(m for m in sys.modules if m.split(".")[0] == "alembic")]))
    """, T_URL=database_url)
    assert found[0] == found[1] == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert found[2] == {"settings": "ok", "database": "ok", "schema": "ok"}
    assert found[3] == []


def test_a_failed_upgrade_in_a_child_raises_its_own_error_here():
    with socket.socket() as closed:  # a port nothing listens on: the child's connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(OperationalError, match="refused"):
        Store(f"postgresql+psycopg://portal@127.0.0.1:{port}/portal").upgrade_in_child()


def upgrade_to(store: Store, revision: str) -> None:
    """Bring a database to one migration, as an older release of the portal left it."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_a_cancel_stored_as_released_becomes_cancelled(database_url, clock):
    old = Store(database_url, clock=clock)
    try:
        upgrade_to(old, "0003")
        with old.engine.begin() as conn:
            for upn, end_reason in (("ada@uni.test", "cancelled"), ("bob@uni.test", "released")):
                conn.execute(text(
                    "INSERT INTO grants (upn, user_dn, user_dn_key, entra_user_id, state, actor, reason, created_at,"
                    " expires_at, end_reason, dc_confirmed, check_count) VALUES (:upn, 'x', 'x', '', 'released',"
                    " 'a', '', :t, :t, :end_reason, false, 0)"),
                    {"upn": upn, "end_reason": end_reason, "t": clock().replace(tzinfo=None)})
        old.upgrade()
        assert old.grants_for("ada@uni.test")[0].state is GrantState.CANCELLED
        assert old.grants_for("bob@uni.test")[0].state is GrantState.RELEASED
        grant, _ = make_grant(old, clock)
        assert old.move_grant(grant.id, GrantState.CANCELLED, ended_at=clock()).state is GrantState.CANCELLED
    finally:
        old.dispose()


def test_sqlite_default_folder_is_created_and_wal_is_on(tmp_path):
    path = tmp_path / "instance" / "deep" / "proofup.sqlite3"
    s = Store(f"sqlite:///{path}")
    s.upgrade()
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    assert path.exists()
    s.dispose()


def test_grant_round_trip_keeps_utc_times_and_normalises_upn(store, clock):
    grant, created = make_grant(store, clock)
    assert created and grant.state is GrantState.PENDING and grant.upn == "ada.lovelace@uni.test"
    again = store.get_grant(grant.id)
    assert again == grant
    assert again.created_at == clock() and again.created_at.tzinfo is not None
    assert again.expires_at - again.created_at == timedelta(minutes=30)


def test_second_open_grant_for_a_person_returns_the_first(store, clock):
    first, _ = make_grant(store, clock)
    second, created = make_grant(store, clock, upn="ADA.LOVELACE@uni.test")
    assert not created and second.id == first.id
    assert len(store.grants_for("ada.lovelace@uni.test")) == 1


def test_database_itself_refuses_two_open_grants_for_one_upn(store, clock):
    make_grant(store, clock)
    with pytest.raises(IntegrityError):
        with store.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO grants (upn, user_dn, user_dn_key, entra_user_id, state, actor, reason, created_at,"
                " expires_at, end_reason, dc_confirmed, check_count) VALUES ('ada.lovelace@uni.test', 'x', 'x', '',"
                " 'active', 'a', '', :t, :t, '', false, 0)"), {"t": clock().replace(tzinfo=None)})


def test_an_ended_grant_frees_the_person_for_a_new_one(store, clock):
    first, _ = make_grant(store, clock)
    ended = store.move_grant(first.id, GrantState.RELEASED, ended_at=clock(),
                             end_reason="released")
    assert ended.state is GrantState.RELEASED and ended.ended_at == clock()
    second, created = make_grant(store, clock)
    assert created and second.id != first.id
    assert [g.id for g in store.grants_for("ada.lovelace@uni.test")] == [second.id, first.id]
    assert store.open_grant_for("ada.lovelace@uni.test").id == second.id


def test_move_grant_is_compare_and_set(store, clock):
    grant, _ = make_grant(store, clock)
    active = store.move_grant(grant.id, GrantState.ACTIVE, activated_at=clock(), dc_confirmed=True)
    assert active.state is GrantState.ACTIVE and active.dc_confirmed is True
    assert store.move_grant(grant.id, GrantState.ACTIVE) is None  # already active
    assert store.move_grant(grant.id, GrantState.FAILED) is None  # an active grant cannot fail
    assert store.move_grant(grant.id, GrantState.EXPIRED, ended_at=clock()).state is GrantState.EXPIRED
    assert store.move_grant(grant.id, GrantState.RELEASED) is None  # ended grants never change
    assert store.get_grant(grant.id).state is GrantState.EXPIRED


def test_bad_upn_is_refused_and_nothing_written(store, clock):
    with pytest.raises(InvalidUpn):
        make_grant(store, clock, upn="not an upn")
    assert store.open_grants() == []


def test_grant_records_are_found_by_dn_whatever_the_case(store, clock):
    grant, _ = make_grant(store, clock)
    found = store.dns_with_grants([DN.upper(), "CN=Someone Else,OU=Staff,DC=uni,DC=test"])
    assert found == {DN.upper(): True, "CN=Someone Else,OU=Staff,DC=uni,DC=test": False}
    assert store.open_grant_for_dn(DN.lower()).id == grant.id


def test_record_check_counts(store, clock):
    grant, _ = make_grant(store, clock)
    store.record_check(grant.id, at=clock())
    after = store.record_check(grant.id, at=clock(), dc_confirmed=True)
    assert after.check_count == 2 and after.last_checked_at == clock() and after.dc_confirmed


def test_i_have_finished_marks_a_grant_once_and_an_answer_clears_it_and_the_note(store, clock):
    grant, _ = make_grant(store, clock)
    asked_at = clock()
    assert store.want_check(grant.id, asked_at)
    clock.advance(1)
    assert not store.want_check(grant.id, clock())  # a second tab's click: the first mark stands
    store.note_check_failed([grant.id], "budget")
    noted = store.get_grant(grant.id)
    assert (noted.check_wanted_at, noted.check_note, noted.last_checked_at) == (asked_at, "budget", None)
    store.record_methods_checks([grant.id], at=clock())
    checked = store.open_grant_for(grant.upn)  # the poll's own read sees it too
    assert (checked.check_wanted_at, checked.check_note, checked.check_count) == (None, "", 1)
    store.move_grant(grant.id, GrantState.RELEASED, ended_at=clock())
    assert not store.want_check(grant.id, clock())  # an ended grant is never marked


def test_a_click_while_graph_answered_stays_asked_for(store, clock):
    grant, _ = make_grant(store, clock)
    pass_started = clock()
    clock.advance(1)
    store.want_check(grant.id, clock())  # pressed after the pass sent its request: the answer may predate it
    store.record_methods_checks([grant.id], at=pass_started)
    assert store.get_grant(grant.id).check_wanted_at == clock()


def test_grant_counts_tell_open_grants_by_state_and_those_past_their_end(store, clock):
    assert store.grant_counts(clock()) == {"past_end": 0}
    short = make_grant(store, clock, minutes=5)[0]
    make_grant(store, clock, upn="alan.turing@uni.test", dn="CN=Alan Turing,OU=Students,DC=uni,DC=test")
    store.move_grant(short.id, GrantState.ACTIVE, activated_at=clock())
    assert store.grant_counts(clock() + timedelta(minutes=10)) == {"pending": 1, "active": 1, "past_end": 1}


def test_the_last_bypass_check_is_overwritten(store, clock):
    assert store.last_bypass_check() is None
    store.record_bypass_check(members=3, without_grant=1, at=clock())
    store.record_bypass_check(members=2, without_grant=0, at=clock() + timedelta(seconds=30))
    check = store.last_bypass_check()
    assert (check.members, check.without_grant, check.checked_at) == (2, 0, clock() + timedelta(seconds=30))


def test_ping(store):
    store.ping()


def test_audit_redacts_secrets_and_filters(store, clock):
    helpdesk = Actor.staff("grace.hopper@uni.test", role="helpdesk", reason="ticket 12")
    store.audit(helpdesk, "grant.intent", upn="Ada.Lovelace@uni.test", grant_id=7, minutes=30,
                tap_code="123456", client_secret="s3cret", password="pw")
    clock.advance(1)
    store.audit(WORKER, "worker.error", outcome="error", step="reconcile")
    events = store.audit_events()
    assert [e.action for e in events] == ["worker.error", "grant.intent"]
    intent = events[1]
    assert intent.upn == "ada.lovelace@uni.test" and intent.grant_id == 7 and intent.detail["minutes"] == 30
    assert (intent.actor_kind, intent.actor, intent.reason) == ("staff", "grace.hopper@uni.test", "ticket 12")
    assert (events[0].actor_kind, events[0].actor, events[0].reason) == ("worker", "worker", "")
    assert intent.detail["tap_code"] == intent.detail["client_secret"] == intent.detail["password"] == REDACTED
    assert [e.action for e in store.audit_events(upn="ada.lovelace@uni.test")] == ["grant.intent"]
    assert [e.outcome for e in store.audit_events(action="worker.error")] == ["error"]
    assert len(store.audit_events(limit=1)) == 1


def test_audit_takes_only_an_actor_and_keeps_a_refused_upn_out_of_the_key(store):
    with pytest.raises(TypeError):
        store.audit("worker", "worker.error")
    store.audit(Actor.visitor("203.0.113.9"), "sign_in.refused", upn="not a upn\nforged", outcome="refused",
                reason="bad\nreason")
    event = store.audit_events(action="sign_in.refused")[0]
    assert event.upn is None and event.detail["given_upn"] == "not a upn\nforged"
    assert (event.actor_kind, event.actor, event.reason) == ("visitor", "203.0.113.9", "bad reason")


def test_migration_gives_old_audit_rows_an_actor_kind(database_url, clock):
    old = Store(database_url, clock=clock)
    try:
        upgrade_to(old, "0004")
        with old.engine.begin() as conn:
            for actor in ("worker", "cli:root", "ada@uni.test", "portal"):
                conn.execute(text("INSERT INTO audit_events (at, actor, action, outcome, detail) VALUES "
                                  "(:t, :actor, 'grant.intent', 'ok', '{}')"),
                             {"t": clock().replace(tzinfo=None), "actor": actor})
        old.upgrade()
        kinds = {e.actor: e.actor_kind for e in old.audit_events()}
        assert kinds == {"worker": "worker", "cli:root": "cli", "ada@uni.test": "student", "portal": ""}
    finally:
        old.dispose()


def test_sign_in_flow_is_single_use_and_expires(store, clock):
    store.put_sign_in_flow("state-1", "encrypted-blob", ttl_seconds=600)
    assert store.take_sign_in_flow("state-1") == "encrypted-blob"
    assert store.take_sign_in_flow("state-1") is None
    store.put_sign_in_flow("state-2", "other", ttl_seconds=60)
    clock.advance(61)
    assert store.take_sign_in_flow("state-2") is None
    assert store.take_sign_in_flow("never-stored") is None
    with pytest.raises(ValueError):
        store.put_sign_in_flow("", "x", ttl_seconds=60)


def test_racing_callbacks_get_one_flow(database_url, clock):
    store = Store(database_url, clock=clock)
    store.upgrade()
    store.put_sign_in_flow("state-race", "blob", ttl_seconds=600)
    results: list[str | None] = []
    barrier = threading.Barrier(4)

    def take() -> None:
        barrier.wait()
        results.append(store.take_sign_in_flow("state-race"))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("blob") == 1 and results.count(None) == 3
    store.dispose()


def test_lease_is_exclusive_renewable_and_expires(store, clock):
    assert store.acquire_lease("worker", "a", ttl_seconds=30)
    assert not store.acquire_lease("worker", "b", ttl_seconds=30)
    clock.advance(20)
    assert store.acquire_lease("worker", "a", ttl_seconds=30)  # renewal pushes the end out
    clock.advance(20)
    assert not store.acquire_lease("worker", "b", ttl_seconds=30)
    clock.advance(11)
    assert store.acquire_lease("worker", "b", ttl_seconds=30)  # a's lease lapsed
    assert store.lease_holder("worker")[0] == "b"
    store.release_lease("worker", "a")  # not a's any more: no effect
    assert store.lease_holder("worker")[0] == "b"
    store.release_lease("worker", "b")
    assert store.acquire_lease("worker", "c", ttl_seconds=30)


def test_locked_budget_state_persists(store):
    with store.locked_budget("reports") as state:
        assert state.fresh and state.stamps == []
        state.stamps = [1.0, 2.0]
        state.blocked_until = 99.0
    with store.locked_budget("reports") as state:
        assert state.stamps == [1.0, 2.0] and state.blocked_until == 99.0


def test_migrations_match_the_models(store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from app.adapters.store import Base

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_instances_starting_together_upgrade_once(database_url):
    stores = [Store(database_url) for _ in range(3)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def start(s: Store) -> None:
        barrier.wait()
        try:
            s.upgrade()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with stores[0].engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    for s in stores:
        s.dispose()


def test_the_hot_grant_read_gives_what_the_orm_gives(store, clock):
    """open_grant_for skips the ORM (every poll runs it): same fields and types, and only an open grant."""
    from app.adapters.store import Grants

    grant, _ = make_grant(store, clock)
    store.move_grant(grant.id, GrantState.ACTIVE, activated_at=clock(), dc_confirmed=True)
    store.record_check(grant.id, at=clock() + timedelta(seconds=5))
    hot = store.open_grant_for("ADA.lovelace@uni.test")
    with store._tx() as session:
        assert hot == Grants(session).open_for("ada.lovelace@uni.test")
    assert hot.dc_confirmed is True and hot.expires_at.tzinfo is not None and hot.state is GrantState.ACTIVE
    store.move_grant(grant.id, GrantState.RELEASED, ended_at=clock())
    assert store.open_grant_for("ada.lovelace@uni.test") is None


def test_a_failing_hot_read_raises_sqlalchemys_error_and_the_next_one_works(store, clock):
    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError

    from app.adapters.store.base import HotRead

    make_grant(store, clock)
    broken = HotRead(select(text("no_such_column")).select_from(text("grants")))
    with pytest.raises(DBAPIError):
        store.read_first(broken)
    assert store.open_grant_for("ada.lovelace@uni.test") is not None  # the pool handed out a sound connection


def _backends_of(store) -> list[tuple[int, str]]:
    """Return (pid, state) of the other PostgreSQL sessions on the store's database."""
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(
            "SELECT pid, state FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"))]


@pytest.mark.postgres
def test_a_hot_read_leaves_no_transaction_open_and_reuses_its_connection(postgres_server, clock):
    """A poll's read is one statement in autocommit: nothing idles in a transaction, one connection per thread."""
    with upgraded_store(postgres_server.create_database(), clock) as store:
        make_grant(store, clock)
        store.dispose()
        for _ in range(3):
            assert store.open_grant_for("ada.lovelace@uni.test") is not None
        backends = _backends_of(store)
        assert [state for _, state in backends] == ["idle"]  # one hot connection, not "idle in transaction"


@pytest.mark.postgres
def test_a_hot_read_survives_the_server_ending_its_connection(postgres_server, clock):
    """A restart or an idle time-out ends the thread's connection: the next read notices it and opens a new one."""
    with upgraded_store(postgres_server.create_database(), clock) as store:
        make_grant(store, clock)
        assert store.open_grant_for("ada.lovelace@uni.test") is not None
        with store.engine.connect() as conn:
            ended = conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")).all()
        assert ended and all(flag for (flag,) in ended)
        assert store.open_grant_for("ada.lovelace@uni.test") is not None


def test_each_thread_reads_on_its_own_connection_closed_with_the_thread(store, clock):
    """Hot reads from several threads never share a connection, and a thread's end closes its connection."""
    make_grant(store, clock)
    connections = []

    def poll():
        assert store.open_grant_for("ada.lovelace@uni.test") is not None
        connections.append(store._hot._local.held.driver)

    assert run_in_threads(poll, 4) == []
    assert len({id(c) for c in connections}) == 4
    import gc

    gc.collect()
    assert len(store._hot._opened) == 0  # each closed when its thread ended
    closed = [c.closed if hasattr(c, "closed") else _sqlite_closed(c) for c in connections]
    assert all(closed)


def _sqlite_closed(connection) -> bool:
    import sqlite3

    try:
        connection.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def test_only_the_hot_connection_commits_without_waiting_for_the_disk(tmp_path, clock):
    """SQLite: a session's touch (write_hot) skips the fsync; every write transaction keeps it."""
    with upgraded_store(f"sqlite:///{tmp_path / 'p.sqlite3'}", clock) as store:
        hot = store._hot.connection(store.engine)
        assert hot.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL, SQLite's default
