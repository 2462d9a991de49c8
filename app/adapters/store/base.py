"""The database itself: engine and transactions on SQLite or PostgreSQL, the schema's base and its migrations."""
from __future__ import annotations

import os
import pickle
import re
import threading
import time
import weakref
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, NamedTuple

from sqlalchemy import DateTime, Select, TypeDecorator, create_engine, delete, event, inspect, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from app.adapters.file_lock import exclusive_lock
from app.adapters.http import forget_connections_after_fork
from app.domain.grants import utc_now

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
SQLITE_BUSY_SECONDS = 10.0
# A row read along with another (a poll's open grant, with its session) is used within this long or not at all.
READ_AHEAD_SECONDS = 1.0


class UTCDateTime(TypeDecorator):
    """Store datetimes as naive UTC on every backend; hand back timezone-aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


def _bound(binder: Callable[[Any], Any] | None, value: Any) -> Any:
    return binder(value) if binder is not None else value


def _sqlite_utc(stored: str) -> datetime:
    """Read a UTCDateTime as SQLite holds it (SQLAlchemy's "YYYY-MM-DD HH:MM:SS.ffffff"), as aware UTC.

    The same value as through SQLAlchemy's own conversion, in C: that one parses with a regular expression,
    about 4 µs a column, and a poll reads about eight of them.
    """
    return datetime.fromisoformat(stored).replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    """The tables of every store module (one module per aggregate; Alembic migrates them all)."""


def _sqlite_pragmas(busy_seconds: float) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN [IMMEDIATE] is ours (SQLAlchemy pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


def _sqlite_begin(conn: Any) -> None:
    # Write transactions say BEGIN IMMEDIATE (see Database._tx); reads stay deferred and never block writers (WAL).
    mode = conn.get_execution_options().get("sqlite_begin", "")
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


ALEMBIC_VERSION_TABLE = "alembic_version"  # where Alembic keeps the database's revision
# A migration file's own `revision = "0018"` and `down_revision = "0017"` lines (Alembic's generated form).
_REVISION_LINE = re.compile(r"""^(revision|down_revision)\s*(?::[^=]*)?=\s*(?:None|["']([^"']*)["'])\s*$""", re.M)


@lru_cache(maxsize=1)
def schema_head() -> str:
    """Return the newest schema revision this code has (read from the migration files once per process).

    Read from each file's revision lines, not through Alembic: /readyz asks in every server process, and
    Alembic (7.6 MiB) would stay in each for that alone. tests/adapters/test_store.py compares it with Alembic's.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        lines = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        if lines.get("revision"):
            revisions.add(lines["revision"])
            parents.add(lines.get("down_revision") or "")
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads, not one: {sorted(heads)}")
    return heads.pop()


def schema_state(url: str) -> tuple[str | None, str, bool]:
    """Return (the database's schema revision, the newest this code has, whether the database exists).

    Changes nothing: a missing SQLite file is not created, and it is opened read-only.
    """
    import sqlite3

    from alembic.runtime.migration import MigrationContext

    head = schema_head()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if not path or path == ":memory:" or not Path(path).exists():
            return None, head, False
        engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(f"file:{path}?mode=ro", uri=True))
    else:
        engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision(), head, True
    finally:
        engine.dispose()


def schema_is_known(revision: str) -> bool:
    """Tell whether a schema revision is one of this code's migrations (else a newer version wrote it)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(revision) is not None
    except CommandError:
        return False


def _pickled(error: BaseException) -> bytes:
    """Return an exception as bytes for the parent process (its text in a RuntimeError if it cannot be pickled)."""
    try:
        return pickle.dumps(error)
    except Exception:  # noqa: BLE001 - some driver errors hold what pickle cannot take
        return pickle.dumps(RuntimeError(f"{error.__class__.__name__}: {error}"))


class HotRead:
    """A SELECT that every poll runs: compiled once per database, then run straight on a thread's own connection.

    Through the ORM the session and grant reads of a poll cost about 650 µs each, through Core's execution
    about 200 µs, this way about 30 µs (docs/benchmarks.md, "/status under `proofup serve`"). Parameters are
    plain strings (they need no conversion); each column goes through its own type's result conversion, so a
    row reads exactly as through SQLAlchemy (aware UTC datetimes, booleans).
    """

    def __init__(self, statement: Select):
        self.statement = statement


class _CompiledRead(NamedTuple):
    sql: str
    positions: tuple[str, ...] | None  # parameter names in order, for positional paramstyles (SQLite's "?")
    columns: tuple[str, ...]
    converters: tuple[Callable[[Any], Any] | None, ...]
    binders: dict[str, Callable[[Any], Any] | None]  # each parameter's conversion (a datetime's to the column's form)


class _HotConnections:
    """One autocommit connection per thread for the hot reads, held outside the pool for the thread's life.

    A poll's reads then cost one round trip each: a pooled connection costs a pre-ping on checkout, a BEGIN
    before the SELECT and a ROLLBACK on return (four exchanges with PostgreSQL instead of one). A thread's
    connection is closed when the thread ends, so there are at most as many as live threads.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._opened: "weakref.WeakSet[_Held]" = weakref.WeakSet()  # every thread's, for dispose() and forks
        self._guard = threading.Lock()
        self._generation = 0

    def connection(self, engine: Engine) -> Any:
        """Return this thread's hot-read connection (the driver's), opening it (as the pool would) if needed."""
        held = getattr(self._local, "held", None)
        if held is not None and held.pooled is not None and held.generation == self._generation:
            return held.driver
        pooled = engine.raw_connection()
        pooled.detach()  # this thread's from now on: never back into the pool, closed when its holder goes
        driver = pooled.dbapi_connection
        driver.rollback()  # the pre-ping may have opened a transaction; autocommit needs none open
        if engine.dialect.name != "sqlite":
            driver.autocommit = True  # SQLite's connect event already switched the driver's transactions off
        else:
            driver.execute("PRAGMA synchronous=NORMAL")  # see Database.write_hot: what this connection may write
        with self._guard:
            held = _Held(pooled, driver, self._generation)
            self._opened.add(held)
        self._local.held = held  # the thread-local holds the only strong reference: the thread's end closes it
        return driver

    def drop(self) -> None:
        """Close this thread's connection (after an error); the next read opens a new one."""
        held = getattr(self._local, "held", None)
        self._local.held = None
        if held is not None:
            held.close()

    def close_all(self) -> None:
        """Close every thread's connection; each thread opens a new one on its next read."""
        with self._guard:
            self._generation += 1
            opened = list(self._opened)
        for held in opened:
            held.close()

    def forget_all(self) -> None:
        """Let go of every connection without closing it (in a forked child: they belong to the parent)."""
        with self._guard:
            self._generation += 1
            for held in self._opened:
                held.pooled = None


class _Held:
    """A thread's hot-read connection; closed when the thread ends and its thread-local goes."""

    __slots__ = ("pooled", "driver", "generation", "__weakref__")

    def __init__(self, pooled: Any, driver: Any, generation: int):
        self.pooled = pooled  # SQLAlchemy's detached proxy: closing it closes the driver's connection
        self.driver = driver
        self.generation = generation

    def close(self) -> None:
        pooled, self.pooled = self.pooled, None
        if pooled is not None:
            try:
                pooled.close()
            except Exception:  # already dead (that is often why it is closed): nothing left to release
                pass

    def __del__(self) -> None:
        self.close()


class Database:
    """Engine, sessions and schema upgrades; the store modules add their verbs to it."""

    def __init__(self, url: str, *, clock: Callable[[], datetime] = utc_now, echo: bool = False,
                 busy_timeout_seconds: float = SQLITE_BUSY_SECONDS):
        self.url = url
        self.clock = clock
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": busy_timeout_seconds, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas(busy_timeout_seconds))
            event.listen(self.engine, "begin", _sqlite_begin)
            self._write_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        else:
            self._write_engine = self.engine
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._write_session = sessionmaker(self._write_engine, expire_on_commit=False)
        self._compiled_reads: dict[HotRead, _CompiledRead] = {}
        self._hot = _HotConnections()
        self._read_ahead = threading.local()
        forget_connections_after_fork(self)

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (safe when several processes start at once)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self._sqlite_upgrade_lock(), self._write_engine.begin() as conn:
            if not self.is_sqlite:
                # Serialise concurrent upgrades of one PostgreSQL database (instances starting together).
                conn.execute(text("SELECT pg_advisory_xact_lock(74207001)"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        # Start-up upgrades run in gunicorn's master before it forks: hold no connection across that fork.
        self.engine.dispose()

    def upgrade_in_child(self) -> None:
        """Run upgrade() in a forked child, so Alembic (7.6 MiB) never stays in a long-running process.

        Only where no other thread runs yet (a fork copies the calling thread alone): `proofup serve`'s master
        while it preloads the app, `proofup worker` as it starts. The child's failure is raised here as is.
        """
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: upgrade, say how it went, and leave without the parent's clean-up
            os.close(read)
            failed = b""
            try:
                self.upgrade()
            except BaseException as error:  # noqa: B902 - every failure goes to the parent
                failed = _pickled(error)
            with os.fdopen(write, "wb") as pipe:
                pipe.write(failed)
            os._exit(1 if failed else 0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            failed = pipe.read()
        _, status = os.waitpid(pid, 0)
        if failed:
            raise pickle.loads(failed)  # our own child's bytes
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"the schema upgrade's process ended with {os.waitstatus_to_exitcode(status)}")

    @contextmanager
    def _sqlite_upgrade_lock(self) -> Iterator[None]:
        """Serialise upgrades of one SQLite file across threads and processes, like the advisory lock on PostgreSQL."""
        database = make_url(self.url).database
        if not self.is_sqlite or not database or database == ":memory:":
            yield
            return
        # Instances opening a fresh file together race to create it and switch it to WAL, and SQLite can answer
        # "database is locked" without waiting in that race; a lock beside the file lets one go first.
        with exclusive_lock(f"{database}.upgrade-lock"):
            yield

    def dispose(self) -> None:
        """Close every pooled connection and every thread's hot-read connection."""
        self._hot.close_all()
        self.engine.dispose()

    def _after_fork(self) -> None:
        # A forked child must never talk over its parent's sockets or SQLite handles: drop them unclosed
        # (closing would end the parent's sessions) and open its own on first use.
        self._hot.forget_all()
        self.engine.dispose(close=False)

    def delete_oldest(self, key: Any, *where: Any, order_by: Any, limit: int) -> int:
        """Delete at most limit rows matching where, first by order_by, in one short transaction; return how many."""
        chosen = select(key).where(*where).order_by(order_by).limit(limit).scalar_subquery()
        with self._tx(write=True) as s:
            return s.execute(delete(key.class_).where(key.in_(chosen))).rowcount

    def ping(self) -> None:
        """Run a trivial query: raises if the database does not answer."""
        with self._tx() as s:
            s.execute(text("SELECT 1"))

    def schema_revision(self) -> str | None:
        """Return the schema revision the database is at (None before the first upgrade); raises if it does not answer."""
        with self.engine.connect() as conn:  # the pool readiness probes share with every request
            # Alembic's own table, read without Alembic: /readyz runs in every server process (schema_head says why).
            if not inspect(conn).has_table(ALEMBIC_VERSION_TABLE):
                return None
            revisions = conn.execute(text(f"SELECT version_num FROM {ALEMBIC_VERSION_TABLE}")).scalars().all()
            if len(revisions) > 1:
                raise RuntimeError(f"the database is at {len(revisions)} schema revisions at once: {sorted(revisions)}")
            return revisions[0] if revisions else None

    def read_first(self, read: HotRead, **params: Any) -> dict[str, Any] | None:
        """Run a hot read and return its first row as {column: value}, or None.

        It runs on this thread's own connection in autocommit: one statement, one round trip (no BEGIN, no
        pre-ping, no ROLLBACK on return to a pool; PostgreSQL answers a poll's read in one exchange). A connection
        the server dropped (a restart, an idle time-out) is noticed here and the read tried once more on a new one.
        """
        compiled, row = self._run_hot(read, params, fetch=True)
        if row is None:
            return None
        return {name: convert(value) if convert and value is not None else value
                for name, convert, value in zip(compiled.columns, compiled.converters, row)}

    def write_hot(self, write: HotRead, **params: Any) -> int:
        """Run one UPDATE on this thread's hot connection, committed by itself; return how many rows it changed.

        Only for a write that may be lost in a power cut without harm (a session's last-seen: lost, the session
        ends sooner, never later): on SQLite that connection commits without waiting for the disk (synchronous
        NORMAL in WAL mode: a crash of the process loses nothing, a power cut at most the last such writes).
        A write transaction with its fsync for every poll's touch held the write lock for the others under load.
        """
        compiled, rowcount = self._run_hot(write, params, fetch=False)
        return rowcount

    def _run_hot(self, statement: HotRead, params: dict[str, Any], *, fetch: bool) -> tuple[_CompiledRead, Any]:
        compiled = self._compiled_reads.get(statement) or self._compile(statement)
        values = {name: str(value) if isinstance(value, str) else _bound(compiled.binders.get(name), value)
                  for name, value in params.items()}
        bound = tuple(values[name] for name in compiled.positions) if compiled.positions is not None else values
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        for attempt in (1, 2):
            connection = self._hot.connection(self.engine)
            try:
                cursor = connection.cursor()
                try:
                    cursor.execute(compiled.sql, bound)
                    return compiled, cursor.fetchone() if fetch else cursor.rowcount
                finally:
                    cursor.close()
            except dbapi_error as exc:
                # As SQLAlchemy would: never use a connection in an unknown state again, and raise its error
                # type (callers such as the CLI catch SQLAlchemyError).
                self._hot.drop()
                if attempt == 1 and self.engine.dialect.is_disconnect(exc, connection, None):
                    continue
                raise DBAPIError.instance(compiled.sql, bound, exc, dbapi_error) from exc
        raise AssertionError("unreachable: the second attempt returns or raises")

    def remember_read_ahead(self, key: Hashable, value: Any) -> None:
        """Keep a row this thread read along with another, for its next read of the same key (take_read_ahead)."""
        self._read_ahead.found = (key, value, time.monotonic())

    def take_read_ahead(self, key: Hashable) -> tuple[bool, Any]:
        """Return (True, the row) once if this thread just read it along with another, else (False, None).

        It counts as read a moment earlier, in the same request: it holds until its first use, this thread's
        next write transaction, forget_read_ahead() (the web calls it when a request ends) or READ_AHEAD_SECONDS,
        whichever comes first.
        """
        found = getattr(self._read_ahead, "found", None)
        if found is None:
            return False, None
        self._read_ahead.found = None
        if found[0] != key or time.monotonic() - found[2] > READ_AHEAD_SECONDS:
            return False, None
        return True, found[1]

    def forget_read_ahead(self) -> None:
        """Drop what this thread read ahead (at the end of a request)."""
        self._read_ahead.found = None

    def _compile(self, read: HotRead) -> _CompiledRead:
        dialect = self.engine.dialect
        compiled = read.statement.compile(dialect=dialect)
        columns = list(getattr(read.statement, "selected_columns", ()))  # an UPDATE (write_hot) has none
        converters = tuple(_sqlite_utc if self.is_sqlite and isinstance(column.type, UTCDateTime)
                           else column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns)
        positions = tuple(compiled.positiontup or ()) if compiled.positional else None
        binders = {name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                   for name, bind in compiled.binds.items()}
        self._compiled_reads[read] = found = _CompiledRead(compiled.string, positions,
                                                           tuple(c.key for c in columns), converters, binders)
        return found

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Session]:
        # SQLite: a writer takes the write lock at BEGIN, so it waits (busy_timeout) instead of failing
        # with "database is locked" when a read-then-write transaction meets another writer.
        factory = self._write_session if write else self._session
        if write:
            self.forget_read_ahead()  # what this thread changes is read afresh
        with factory() as session, session.begin():
            yield session
