"""Grants: the records that back bypass memberships (at most one open grant per person, kept by the database)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import (Boolean, CheckConstraint, Index, Integer, String, Text, bindparam, case, func, select, text,
                        update)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.adapters.store.base import Base, Database, HotRead, UTCDateTime
from app.domain.directory import dn_key
from app.domain.grants import OPEN_STATES, GrantState, GrantView, sources
from app.domain.tap import Remedy
from app.domain.upn import Upn

_OPEN = tuple(s.value for s in GrantState if s in OPEN_STATES)
_OPEN_SQL = "state IN ({})".format(", ".join(f"'{s}'" for s in _OPEN))
OPEN_GRANT_SQL = "grants." + _OPEN_SQL  # the same condition in a join (the partial index's own predicate)
_STATES_SQL = "state IN ({})".format(", ".join(f"'{s.value}'" for s in GrantState))
_REMEDIES_SQL = "remedy IN ({})".format(", ".join(f"'{r.value}'" for r in Remedy))


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
    remedy: Mapped[str] = mapped_column(String(16), default=Remedy.BYPASS.value, server_default=Remedy.BYPASS.value)
    tap_method_id: Mapped[str] = mapped_column(String(64), default="", server_default="")  # never the pass's code
    method_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The invite the student signed in with before this unlock: closing its batch releases exactly these grants.
    invite_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    # The student pressed "I have finished": the worker's next confirmation pass checks this grant first.
    check_wanted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Why the worker's last methods check could not run, so that every poll (any instance) can say so.
    check_note: Mapped[str] = mapped_column(String(32), default="", server_default="")

    __table_args__ = (
        # At most one open grant per person, enforced by the database itself (both backends).
        Index("uq_grants_open_upn", "upn", unique=True,
              sqlite_where=text(_OPEN_SQL), postgresql_where=text(_OPEN_SQL)),
        CheckConstraint(_STATES_SQL, name="ck_grants_state"),  # the states of GrantState, no other
        CheckConstraint(_REMEDIES_SQL, name="ck_grants_remedy"),
    )

    def view(self) -> GrantView:
        return grant_view({column.key: getattr(self, column.key) for column in self.__table__.columns})


def grant_view(row: Mapping[str, Any]) -> GrantView:
    """Return the grant a row of the grants table holds (from the ORM or a hot read alike)."""
    return GrantView(
        id=row["id"], upn=Upn(row["upn"]), user_dn=row["user_dn"], entra_user_id=row["entra_user_id"],
        state=GrantState(row["state"]), actor=row["actor"], reason=row["reason"], created_at=row["created_at"],
        expires_at=row["expires_at"], activated_at=row["activated_at"], ended_at=row["ended_at"],
        end_reason=row["end_reason"], ttl_seconds=row["ttl_seconds"], dc_confirmed=bool(row["dc_confirmed"]),
        last_checked_at=row["last_checked_at"], check_count=row["check_count"], remedy=Remedy(row["remedy"]),
        tap_method_id=row["tap_method_id"], method_seen_at=row["method_seen_at"],
        check_wanted_at=row["check_wanted_at"], check_note=row["check_note"],
    )


def open_grant_key(upn: str) -> tuple[str, Upn]:
    """Return the key a person's open grant is read ahead under."""
    return ("open grant", Upn(upn))


# Every poll of a signed-in student reads their open grant. The condition is the partial unique index's own
# (uq_grants_open_upn), so both databases answer from that index.
_OPEN_BY_UPN = HotRead(select(GrantRow.__table__).where(GrantRow.upn == bindparam("upn"), text(_OPEN_SQL)))


class Grants:
    """The grant table inside one transaction (a unit of work's, or one verb's of the Store)."""

    def __init__(self, session: Session):
        self.session = session

    def create(self, *, upn: str, user_dn: str, entra_user_id: str, actor: str, reason: str,
               created_at: datetime, expires_at: datetime, ttl_seconds: int | None = None,
               remedy: Remedy = Remedy.BYPASS, invite_id: int | None = None) -> tuple[GrantView, bool]:
        """Write a pending grant; return (the open grant, True) or (the existing open one, False)."""
        upn = Upn(upn)
        row = GrantRow(
            upn=upn, user_dn=user_dn, user_dn_key=dn_key(user_dn), entra_user_id=entra_user_id or "",
            state=GrantState.PENDING.value, actor=actor, reason=reason, created_at=created_at,
            expires_at=expires_at, ttl_seconds=ttl_seconds, end_reason="", dc_confirmed=False, check_count=0,
            remedy=Remedy(remedy).value, tap_method_id="", invite_id=invite_id,
        )
        try:
            # A savepoint: a second open grant is refused by the unique index without ending the transaction.
            with self.session.begin_nested():
                self.session.add(row)
            return row.view(), True
        except IntegrityError:
            existing = self.open_for(upn)
            if existing is None:  # closed between our insert and this read: the caller may retry
                raise
            return existing, False

    def get(self, grant_id: int) -> GrantView | None:
        """Return one grant, or None."""
        row = self.session.get(GrantRow, grant_id)
        return row.view() if row else None

    def open_for(self, upn: str) -> GrantView | None:
        """Return the person's pending or active grant, if any."""
        row = self.session.scalars(
            select(GrantRow).where(GrantRow.upn == Upn(upn), GrantRow.state.in_(_OPEN))
        ).first()
        return row.view() if row else None

    def history(self, upn: str, limit: int = 20) -> list[GrantView]:
        """Return the person's grants, newest first."""
        rows = self.session.scalars(
            select(GrantRow).where(GrantRow.upn == Upn(upn)).order_by(GrantRow.id.desc()).limit(limit)
        )
        return [r.view() for r in rows]

    def unlocks_since(self, upn: str, since: datetime) -> int:
        """Count the person's grants opened since a time, except those that failed (the unlock never completed)."""
        return self.session.scalar(
            select(func.count()).select_from(GrantRow).where(
                GrantRow.upn == Upn(upn), GrantRow.created_at >= since, GrantRow.state != GrantState.FAILED.value,
            )
        ) or 0

    def all_open(self) -> list[GrantView]:
        """Return every pending or active grant, oldest first."""
        rows = self.session.scalars(select(GrantRow).where(GrantRow.state.in_(_OPEN)).order_by(GrantRow.id))
        return [r.view() for r in rows]

    def dns_with_grants(self, dns: list[str]) -> dict[str, bool]:
        """For each DN, tell whether any grant (open or not) was ever recorded: the portal added it."""
        keys = {dn_key(dn): dn for dn in dns}
        found: dict[str, bool] = {dn: False for dn in dns}
        if keys:
            query = select(GrantRow.user_dn_key).where(GrantRow.user_dn_key.in_(list(keys)),
                                                       GrantRow.remedy == Remedy.BYPASS.value).distinct()
            for key in self.session.scalars(query):
                found[keys[key]] = True
        return found

    def open_for_dn(self, dn: str) -> GrantView | None:
        """Return the open grant backing a member DN, if any."""
        row = self.session.scalars(
            select(GrantRow).where(GrantRow.user_dn_key == dn_key(dn), GrantRow.state.in_(_OPEN),
                                   GrantRow.remedy == Remedy.BYPASS.value)  # a pass backs no membership
        ).first()
        return row.view() if row else None

    def move(self, grant_id: int, to: GrantState, **values: Any) -> GrantView | None:
        """Change a grant's state if the lifecycle allows it from the stored state (compare-and-set); else None."""
        allowed = [s.value for s in sources(to)]
        result = self.session.execute(
            update(GrantRow).where(GrantRow.id == grant_id, GrantRow.state.in_(allowed))
            .values(state=to.value, **values)
        )
        if result.rowcount != 1:
            return None
        return self.get(grant_id)

    def extend(self, grant_id: int, *, expires_at: datetime) -> GrantView | None:
        """Move an open grant's end (compare-and-set on its being open); None if it has ended meanwhile."""
        result = self.session.execute(update(GrantRow).where(GrantRow.id == grant_id, GrantRow.state.in_(_OPEN))
                                      .values(expires_at=expires_at))
        return self.get(grant_id) if result.rowcount == 1 else None

    def ended_since(self, state: GrantState, since: datetime, limit: int) -> list[GrantView]:
        """Return at most limit grants that ended in a state since a time, newest first."""
        rows = self.session.scalars(select(GrantRow).where(GrantRow.state == state.value, GrantRow.ended_at >= since)
                                    .order_by(GrantRow.id.desc()).limit(limit))
        return [r.view() for r in rows]

    def record_check(self, grant_id: int, *, at: datetime, dc_confirmed: bool | None = None) -> GrantView | None:
        """Note that a grant was checked (methods or replication) at a time."""
        values: dict[str, Any] = {"last_checked_at": at, "check_count": GrantRow.check_count + 1}
        if dc_confirmed is not None:
            values["dc_confirmed"] = dc_confirmed
        self.session.execute(update(GrantRow).where(GrantRow.id == grant_id).values(**values))
        return self.get(grant_id)

    def note_method_seen(self, grant_id: int, at: datetime) -> None:
        """Remember when a strong method was first seen for an open grant (a later sighting changes nothing)."""
        self.session.execute(update(GrantRow).where(GrantRow.id == grant_id, GrantRow.state.in_(_OPEN),
                                                    GrantRow.method_seen_at.is_(None)).values(method_seen_at=at))

    def want_check(self, grant_id: int, at: datetime) -> bool:
        """Ask for an early methods check of an open grant; False when one is already asked for or it has ended."""
        result = self.session.execute(
            update(GrantRow).where(GrantRow.id == grant_id, GrantRow.state.in_(_OPEN),
                                   GrantRow.check_wanted_at.is_(None)).values(check_wanted_at=at)
        )
        return result.rowcount == 1

    def record_methods_checks(self, grant_ids: list[int], *, at: datetime) -> None:
        """Note that Graph answered these grants' methods checks at a time: asked-for checks and old notes are done."""
        if not grant_ids:
            return
        # An early check asked for after `at` (while Graph answered) stays asked for: this answer may predate it.
        still_wanted = case((GrantRow.check_wanted_at > at, GrantRow.check_wanted_at), else_=None)
        self.session.execute(update(GrantRow).where(GrantRow.id.in_(grant_ids)).values(
            last_checked_at=at, check_count=GrantRow.check_count + 1, check_wanted_at=still_wanted, check_note=""))

    def note_check_failed(self, grant_ids: list[int], note: str) -> None:
        """Note why the methods check of these grants could not run; they stay due (and asked for, if they were)."""
        if grant_ids:
            self.session.execute(update(GrantRow).where(GrantRow.id.in_(grant_ids), GrantRow.check_note != note)
                                 .values(check_note=note))


class GrantStore(Database):
    """The Store's grant verbs: each runs in a transaction of its own (use a unit of work to join several)."""

    def create_grant(self, **values: Any) -> tuple[GrantView, bool]:
        """Write a pending grant; return (the open grant, True) or (the existing open one, False)."""
        with self._tx(write=True) as s:
            return Grants(s).create(**values)

    def get_grant(self, grant_id: int) -> GrantView | None:
        """Return one grant, or None."""
        with self._tx() as s:
            return Grants(s).get(grant_id)

    def open_grant_for(self, upn: str) -> GrantView | None:
        """Return the person's pending or active grant, if any (the hot read of every poll).

        A poll's session read brings it along (SessionStore.get_session): then it costs no second round trip.
        """
        found, grant = self.take_read_ahead(open_grant_key(upn))
        if found:
            return grant
        row = self.read_first(_OPEN_BY_UPN, upn=Upn(upn))
        return grant_view(row) if row else None

    def grants_for(self, upn: str, limit: int = 20) -> list[GrantView]:
        """Return the person's grants, newest first."""
        with self._tx() as s:
            return Grants(s).history(upn, limit)

    def unlocks_since(self, upn: str, since: datetime) -> int:
        """Count the person's grants opened since a time, except those that failed (the unlock never completed)."""
        with self._tx() as s:
            return Grants(s).unlocks_since(upn, since)

    def open_grants(self) -> list[GrantView]:
        """Return every pending or active grant, oldest first."""
        with self._tx() as s:
            return Grants(s).all_open()

    def grant_counts(self, now: datetime) -> dict[str, int]:
        """Count open grants by state, and those among them whose end has passed ("past_end")."""
        # Summed per state, not grouped by the comparison: PostgreSQL sees the two copies of `expires_at < :now`
        # a GROUP BY would need as different expressions and refuses the query.
        past_end = func.sum(case((GrantRow.expires_at < now, 1), else_=0))
        with self._tx() as s:
            rows = s.execute(
                select(GrantRow.state, func.count(), past_end).where(GrantRow.state.in_(_OPEN)).group_by(GrantRow.state)
            ).all()
        counts: dict[str, int] = {"past_end": 0}
        for state, n, past in rows:
            counts[state] = n
            counts["past_end"] += int(past or 0)
        return counts

    def grants_ended_since(self, state: GrantState, since: datetime, limit: int = 50) -> list[GrantView]:
        """Return at most limit grants that ended in a state (e.g. failed) since a time, newest first."""
        with self._tx() as s:
            return Grants(s).ended_since(state, since, limit)

    def purge_closed_grants(self, before: datetime, limit: int) -> int:
        """Delete at most limit grants that ended before before (never an open one); return how many went."""
        return self.delete_oldest(GrantRow.id, GrantRow.state.not_in(_OPEN), GrantRow.ended_at.is_not(None),
                                  GrantRow.ended_at < before, order_by=GrantRow.id, limit=limit)

    def dns_with_grants(self, dns: list[str]) -> dict[str, bool]:
        """For each DN, tell whether any grant (open or not) was ever recorded: the portal added it."""
        with self._tx() as s:
            return Grants(s).dns_with_grants(dns)

    def open_grant_for_dn(self, dn: str) -> GrantView | None:
        """Return the open grant backing a member DN, if any."""
        with self._tx() as s:
            return Grants(s).open_for_dn(dn)

    def move_grant(self, grant_id: int, to: GrantState, **values: Any) -> GrantView | None:
        """Change a grant's state if the lifecycle allows it (compare-and-set); else None."""
        with self._tx(write=True) as s:
            return Grants(s).move(grant_id, to, **values)

    def record_check(self, grant_id: int, *, at: datetime, dc_confirmed: bool | None = None) -> GrantView | None:
        """Note that a grant was checked (methods or replication) at a time."""
        with self._tx(write=True) as s:
            return Grants(s).record_check(grant_id, at=at, dc_confirmed=dc_confirmed)

    def note_method_seen(self, grant_id: int, at: datetime) -> None:
        """Remember when a strong method was first seen for an open grant (a later sighting changes nothing)."""
        with self._tx(write=True) as s:
            Grants(s).note_method_seen(grant_id, at)

    def want_check(self, grant_id: int, at: datetime) -> bool:
        """Ask for an early methods check of an open grant; False when one is already asked for or it has ended."""
        with self._tx(write=True) as s:
            return Grants(s).want_check(grant_id, at)

    def record_methods_checks(self, grant_ids: list[int], *, at: datetime) -> None:
        """Note that Graph answered these grants' methods checks at a time: asked-for checks and old notes are done."""
        with self._tx(write=True) as s:
            Grants(s).record_methods_checks(grant_ids, at=at)

    def note_check_failed(self, grant_ids: list[int], note: str) -> None:
        """Note why the methods check of these grants could not run; they stay due (and asked for, if they were)."""
        with self._tx(write=True) as s:
            Grants(s).note_check_failed(grant_ids, note)
