"""The database: grants, audit trail, leases, the shared Graph budget and pending sign-in flows.

SQLite file by default, PostgreSQL through postgresql+psycopg:// for several instances; the schema
comes from the Alembic migrations in app/migrations (Store.upgrade()). Nothing ORM leaves this module:
callers get frozen snapshots (GrantView, AuditEvent, BudgetState).
"""
from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from app.adapters.directory_base import dn_key
from app.adapters.http import forget_connections_after_fork
from app.adapters.file_lock import exclusive_lock
from app.domain.grants import OPEN_STATES, GrantState, GrantView, normalize_upn, sources, utc_now

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_SECONDS = 10.0
_OPEN = tuple(s.value for s in OPEN_STATES)
_SECRET_KEY = re.compile(r"password|secret|token|credential|^code$|tap_code|assertion", re.IGNORECASE)
REDACTED = "(redacted)"


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


class Base(DeclarativeBase):
    pass


class GrantRow(Base):
    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    upn: Mapped[str] = mapped_column(String(320), index=True)
    user_dn: Mapped[str] = mapped_column(String(1024))
    user_dn_key: Mapped[str] = mapped_column(String(1024), index=True)
    entra_user_id: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(16), index=True)
    actor: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end_reason: Mapped[str] = mapped_column(Text, default="")
    ttl_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dc_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    check_count: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        # At most one open grant per person, enforced by the database itself (both backends).
        Index(
            "uq_grants_open_upn", "upn", unique=True,
            sqlite_where=text("state IN ('pending', 'active')"),
            postgresql_where=text("state IN ('pending', 'active')"),
        ),
    )

    def view(self) -> GrantView:
        return GrantView(
            id=self.id, upn=self.upn, user_dn=self.user_dn, entra_user_id=self.entra_user_id,
            state=GrantState(self.state), actor=self.actor, reason=self.reason, created_at=self.created_at,
            expires_at=self.expires_at, activated_at=self.activated_at, ended_at=self.ended_at,
            end_reason=self.end_reason, ttl_seconds=self.ttl_seconds, dc_confirmed=self.dc_confirmed,
            last_checked_at=self.last_checked_at, check_count=self.check_count,
        )


class AuditRow(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64), index=True)
    upn: Mapped[str | None] = mapped_column(String(320), nullable=True, index=True)
    grant_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="{}")


class LeaseRow(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RateBudgetRow(Base):
    __tablename__ = "rate_budget"

    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[float] = mapped_column(Float, default=0.0)  # epoch seconds
    stamps: Mapped[str] = mapped_column(Text, default="[]")  # sliding-window request times, JSON
    blocked_until: Mapped[float] = mapped_column(Float, default=0.0)  # epoch seconds (Retry-After)


class SignInFlowRow(Base):
    __tablename__ = "sign_in_flows"

    state: Mapped[str] = mapped_column(String(128), primary_key=True)
    blob: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


@dataclass(frozen=True)
class AuditEvent:
    """One line of the audit trail."""

    id: int
    at: datetime
    actor: str
    action: str
    upn: str | None
    grant_id: int | None
    outcome: str
    detail: dict[str, Any]


@dataclass
class BudgetState:
    """The mutable rate state of one Graph category, locked while a caller holds it."""

    category: str
    tokens: float
    updated_at: float
    stamps: list[float] = field(default_factory=list)
    blocked_until: float = 0.0
    fresh: bool = False  # the row was just created


def redact(detail: dict[str, Any]) -> dict[str, Any]:
    """Replace values whose key names a secret, so the audit trail never holds one."""
    return {k: (REDACTED if _SECRET_KEY.search(k) else v) for k, v in detail.items()}


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
    # Write transactions say BEGIN IMMEDIATE (see Store._tx); reads stay deferred and never block writers (WAL).
    mode = conn.get_execution_options().get("sqlite_begin", "")
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


def schema_state(url: str) -> tuple[str | None, str, bool]:
    """Return (the database's schema revision, the newest this code has, whether the database exists).

    Changes nothing: a missing SQLite file is not created, and it is opened read-only.
    """
    import sqlite3

    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head() or ""
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


class Store:
    """Engine and sessions over the portal's database, with domain verbs."""

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
        forget_connections_after_fork(self)

    # --- lifecycle ---------------------------------------------------------------------------

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
        """Close every pooled connection."""
        self.engine.dispose()

    def _after_fork(self) -> None:
        # A forked child must never talk over its parent's sockets or SQLite handles: drop them unclosed
        # (closing would end the parent's sessions) and open its own on first use.
        self.engine.dispose(close=False)

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Session]:
        # SQLite: a writer takes the write lock at BEGIN, so it waits (busy_timeout) instead of failing
        # with "database is locked" when a read-then-write transaction meets another writer.
        factory = self._write_session if write else self._session
        with factory() as session, session.begin():
            yield session

    # --- grants ------------------------------------------------------------------------------

    def create_grant(self, *, upn: str, user_dn: str, entra_user_id: str, actor: str, reason: str,
                     created_at: datetime, expires_at: datetime,
                     ttl_seconds: int | None = None) -> tuple[GrantView, bool]:
        """Write a pending grant; return (the open grant, True) or (the existing open one, False)."""
        upn = normalize_upn(upn)
        row = GrantRow(
            upn=upn, user_dn=user_dn, user_dn_key=dn_key(user_dn), entra_user_id=entra_user_id or "",
            state=GrantState.PENDING.value, actor=actor, reason=reason, created_at=created_at,
            expires_at=expires_at, ttl_seconds=ttl_seconds, end_reason="", dc_confirmed=False, check_count=0,
        )
        try:
            with self._tx(write=True) as s:
                s.add(row)
                s.flush()
                return row.view(), True
        except IntegrityError:
            existing = self.open_grant_for(upn)
            if existing is None:  # closed between our insert and this read: the caller may retry
                raise
            return existing, False

    def get_grant(self, grant_id: int) -> GrantView | None:
        """Return one grant, or None."""
        with self._tx() as s:
            row = s.get(GrantRow, grant_id)
            return row.view() if row else None

    def open_grant_for(self, upn: str) -> GrantView | None:
        """Return the person's pending or active grant, if any."""
        with self._tx() as s:
            row = s.scalars(
                select(GrantRow).where(GrantRow.upn == normalize_upn(upn), GrantRow.state.in_(_OPEN))
            ).first()
            return row.view() if row else None

    def grants_for(self, upn: str, limit: int = 20) -> list[GrantView]:
        """Return the person's grants, newest first."""
        with self._tx() as s:
            rows = s.scalars(
                select(GrantRow).where(GrantRow.upn == normalize_upn(upn))
                .order_by(GrantRow.id.desc()).limit(limit)
            )
            return [r.view() for r in rows]

    def unlocks_since(self, upn: str, since: datetime) -> int:
        """Count the person's grants opened since a time, except those that failed (the unlock never completed)."""
        with self._tx() as s:
            return s.scalar(
                select(func.count()).select_from(GrantRow).where(
                    GrantRow.upn == normalize_upn(upn), GrantRow.created_at >= since,
                    GrantRow.state != GrantState.FAILED.value,
                )
            ) or 0

    def open_grants(self) -> list[GrantView]:
        """Return every pending or active grant, oldest first."""
        with self._tx() as s:
            rows = s.scalars(select(GrantRow).where(GrantRow.state.in_(_OPEN)).order_by(GrantRow.id))
            return [r.view() for r in rows]

    def grant_counts(self, now: datetime) -> dict[str, int]:
        """Count open grants by state, and those among them whose end has passed ("past_end")."""
        with self._tx() as s:
            rows = s.execute(
                select(GrantRow.state, GrantRow.expires_at < now, func.count())
                .where(GrantRow.state.in_(_OPEN)).group_by(GrantRow.state, GrantRow.expires_at < now)
            ).all()
        counts: dict[str, int] = {"past_end": 0}
        for state, past_end, n in rows:
            counts[state] = counts.get(state, 0) + n
            if past_end:
                counts["past_end"] += n
        return counts

    def dns_with_grants(self, dns: list[str]) -> dict[str, bool]:
        """For each DN, tell whether any grant (open or not) was ever recorded: the portal added it."""
        keys = {dn_key(dn): dn for dn in dns}
        found: dict[str, bool] = {dn: False for dn in dns}
        if not keys:
            return found
        with self._tx() as s:
            for key in s.scalars(select(GrantRow.user_dn_key).where(GrantRow.user_dn_key.in_(list(keys))).distinct()):
                found[keys[key]] = True
        return found

    def open_grant_for_dn(self, dn: str) -> GrantView | None:
        """Return the open grant backing a member DN, if any."""
        with self._tx() as s:
            row = s.scalars(
                select(GrantRow).where(GrantRow.user_dn_key == dn_key(dn), GrantRow.state.in_(_OPEN))
            ).first()
            return row.view() if row else None

    def move_grant(self, grant_id: int, to: GrantState, **values: Any) -> GrantView | None:
        """Change a grant's state if the lifecycle allows it from the stored state (compare-and-set); else None."""
        allowed = [s.value for s in sources(to)]
        with self._tx(write=True) as s:
            result = s.execute(
                update(GrantRow).where(GrantRow.id == grant_id, GrantRow.state.in_(allowed))
                .values(state=to.value, **values)
            )
            if result.rowcount != 1:
                return None
            return s.get(GrantRow, grant_id).view()

    def record_check(self, grant_id: int, *, at: datetime, dc_confirmed: bool | None = None) -> GrantView | None:
        """Note that a grant was checked (methods or replication) at a time."""
        values: dict[str, Any] = {"last_checked_at": at, "check_count": GrantRow.check_count + 1}
        if dc_confirmed is not None:
            values["dc_confirmed"] = dc_confirmed
        with self._tx(write=True) as s:
            s.execute(update(GrantRow).where(GrantRow.id == grant_id).values(**values))
            row = s.get(GrantRow, grant_id)
            return row.view() if row else None

    def claim_check(self, grant_id: int, expected_last_checked_at: datetime | None, now: datetime) -> bool:
        """Claim the next methods check of an open grant (compare-and-set on last_checked_at, across instances)."""
        same_as_seen = (GrantRow.last_checked_at.is_(None) if expected_last_checked_at is None
                        else GrantRow.last_checked_at == expected_last_checked_at)
        with self._tx(write=True) as s:
            result = s.execute(
                update(GrantRow).where(GrantRow.id == grant_id, GrantRow.state.in_(_OPEN), same_as_seen)
                .values(last_checked_at=now, check_count=GrantRow.check_count + 1)
            )
            return result.rowcount == 1

    def ping(self) -> None:
        """Run a trivial query: raises if the database does not answer."""
        with self._tx() as s:
            s.execute(text("SELECT 1"))

    # --- audit -------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, upn: str | None = None, grant_id: int | None = None,
              outcome: str = "ok", **detail: Any) -> None:
        """Append one event to the audit trail (secret-looking keys are redacted)."""
        with self._tx(write=True) as s:
            s.add(AuditRow(
                at=self.clock(), actor=actor, action=action, upn=upn.strip().lower() if upn else None,
                grant_id=grant_id, outcome=outcome, detail=json.dumps(redact(detail), default=str, sort_keys=True),
            ))

    def audit_events(self, upn: str | None = None, limit: int = 100, *, grant_id: int | None = None,
                     action: str | None = None) -> list[AuditEvent]:
        """Return audit events, newest first, optionally for one person, grant or action."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if upn:
            query = query.where(AuditRow.upn == upn.strip().lower())
        if grant_id is not None:
            query = query.where(AuditRow.grant_id == grant_id)
        if action:
            query = query.where(AuditRow.action == action)
        with self._tx() as s:
            return [
                AuditEvent(id=r.id, at=r.at, actor=r.actor, action=r.action, upn=r.upn, grant_id=r.grant_id,
                           outcome=r.outcome, detail=json.loads(r.detail or "{}"))
                for r in s.scalars(query)
            ]

    # --- retention ---------------------------------------------------------------------------

    def purge_audit_events(self, before: datetime, limit: int) -> int:
        """Delete at most limit audit events older than before, oldest first; return how many went."""
        return self.delete_oldest(AuditRow.id, AuditRow.at < before, order_by=AuditRow.id, limit=limit)

    def purge_closed_grants(self, before: datetime, limit: int) -> int:
        """Delete at most limit grants that ended before before (never an open one); return how many went."""
        return self.delete_oldest(GrantRow.id, GrantRow.state.not_in(_OPEN), GrantRow.ended_at.is_not(None),
                                  GrantRow.ended_at < before, order_by=GrantRow.id, limit=limit)

    def purge_sign_in_flows(self, now: datetime, limit: int) -> int:
        """Delete at most limit sign-in flows that expired unused; return how many went."""
        return self.delete_oldest(SignInFlowRow.state, SignInFlowRow.expires_at < now,
                                  order_by=SignInFlowRow.expires_at, limit=limit)

    def delete_oldest(self, key: Any, *where: Any, order_by: Any, limit: int) -> int:
        """Delete at most limit rows matching where, first by order_by, in one short transaction; return how many."""
        chosen = select(key).where(*where).order_by(order_by).limit(limit).scalar_subquery()
        with self._tx(write=True) as s:
            return s.execute(delete(key.class_).where(key.in_(chosen))).rowcount

    # --- sign-in flows -----------------------------------------------------------------------

    def put_sign_in_flow(self, state: str, blob: str, ttl_seconds: int) -> None:
        """Keep an (already encrypted) sign-in flow until its callback arrives, at most ttl_seconds."""
        if not state or ttl_seconds <= 0:
            raise ValueError("a sign-in flow needs a state and a positive lifetime")
        now = self.clock()
        with self._tx(write=True) as s:
            s.execute(delete(SignInFlowRow).where(SignInFlowRow.expires_at < now))
            s.merge(SignInFlowRow(state=state, blob=blob, expires_at=now + timedelta(seconds=ttl_seconds)))

    def take_sign_in_flow(self, state: str) -> str | None:
        """Return and delete a sign-in flow (single use); None if unknown, used or expired."""
        if not state:
            return None
        with self._tx(write=True) as s:
            row = s.get(SignInFlowRow, state)
            if row is None:
                return None
            blob, expires_at = row.blob, row.expires_at
            # Only the caller whose DELETE removed the row may use it: two racing callbacks get one flow.
            taken = s.execute(delete(SignInFlowRow).where(SignInFlowRow.state == state)).rowcount == 1
        return blob if taken and expires_at > self.clock() else None

    # --- leases ------------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take or renew a lease if it is free, expired or already ours; True if we hold it now."""
        now = self.clock()
        until = now + timedelta(seconds=ttl_seconds)
        with self._tx(write=True) as s:
            result = s.execute(
                update(LeaseRow).where(LeaseRow.name == name, or_(LeaseRow.holder == holder, LeaseRow.expires_at <= now))
                .values(holder=holder, expires_at=until)
            )
            if result.rowcount == 1:
                return True
            if s.get(LeaseRow, name) is not None:
                return False
        try:
            with self._tx(write=True) as s:
                s.add(LeaseRow(name=name, holder=holder, expires_at=until))
            return True
        except IntegrityError:  # another process created it first
            return False

    def steal_lease(self, name: str, old_holder: str, new_holder: str, ttl_seconds: float) -> bool:
        """Hand a lease from a holder known to be dead to a new one, only if the old one still has it."""
        until = self.clock() + timedelta(seconds=ttl_seconds)
        with self._tx(write=True) as s:
            result = s.execute(
                update(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == old_holder)
                .values(holder=new_holder, expires_at=until)
            )
            return result.rowcount == 1

    def release_lease(self, name: str, holder: str) -> None:
        """Give a lease back if we hold it."""
        with self._tx(write=True) as s:
            s.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder))

    def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        """Return who holds a lease and until when (even if expired), or None."""
        with self._tx() as s:
            row = s.get(LeaseRow, name)
            return (row.holder, row.expires_at) if row else None

    # --- rate budget -------------------------------------------------------------------------

    @contextmanager
    def locked_budget(self, category: str) -> Iterator[BudgetState]:
        """Lock one category's budget row across processes, yield its state, write changes back."""
        self._ensure_budget_row(category)
        with self._tx(write=True) as s:
            row = s.scalars(
                select(RateBudgetRow).where(RateBudgetRow.category == category).with_for_update()
            ).one()
            state = BudgetState(category=category, tokens=row.tokens, updated_at=row.updated_at,
                                stamps=json.loads(row.stamps or "[]"), blocked_until=row.blocked_until,
                                fresh=row.updated_at == 0.0)
            yield state
            row.tokens, row.updated_at = state.tokens, state.updated_at
            row.stamps, row.blocked_until = json.dumps(state.stamps), state.blocked_until

    def _ensure_budget_row(self, category: str) -> None:
        with self._tx() as s:
            if s.get(RateBudgetRow, category) is not None:
                return
        try:
            with self._tx(write=True) as s:
                if s.get(RateBudgetRow, category) is None:
                    s.add(RateBudgetRow(category=category, tokens=0.0, updated_at=0.0, stamps="[]", blocked_until=0.0))
        except IntegrityError:  # created concurrently: fine
            pass
