"""Invites: one row per invite link, keyed by the hash of its token; its state is derived, never stored.

The row keeps the token only sealed (encrypted under a key derived from the secret key) until the outbox has
sent its mail, and erases it then (erase_seals): the mail is rendered at send time, so no outbox row ever holds
the link. Every change is a compare-and-set on the facts (opened_at, used_at, revoked_at), so two clicks, a
revoke and a sign-in racing each other end in exactly one outcome.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, and_, case, func, not_, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.adapters.store.base import Base, Database, UTCDateTime
from app.adapters.store.outbox import OutboxRow
from app.domain.invites import InviteFilter, InviteState, InviteView
from app.domain.mail import DONE_STATES, PROBLEM_STATES, MailState
from app.domain.upn import Upn

_PROBLEMS = [s.value for s in PROBLEM_STATES]
CHUNK = 500  # ids or UPNs in one IN (...): well inside every backend's limit on bound parameters
_DONE = [s.value for s in DONE_STATES]


class InviteRow(Base):
    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    upn: Mapped[str] = mapped_column(String(320), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    created_by: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(Text, default="")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_by: Mapped[str] = mapped_column(String(320), default="")
    batch_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    mail_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the outbox row that carries the link
    sealed_token: Mapped[str | None] = mapped_column(Text, nullable=True)  # erased once the mail is sent

    __table_args__ = (Index("uq_invites_token_hash", "token_hash", unique=True),)


def _view(row: InviteRow, mail_state: str | None, mail_error: str | None) -> InviteView:
    return InviteView(
        id=row.id, upn=Upn(row.upn), created_at=row.created_at, created_by=row.created_by, reason=row.reason,
        expires_at=row.expires_at, opened_at=row.opened_at, used_at=row.used_at, revoked_at=row.revoked_at,
        revoked_by=row.revoked_by, batch_id=row.batch_id, mail_id=row.mail_id,
        mail_state=MailState(mail_state) if mail_state else None, mail_error=mail_error or "",
    )


def _with_mail():
    return (select(InviteRow, OutboxRow.state, OutboxRow.last_error)
            .outerjoin(OutboxRow, OutboxRow.id == InviteRow.mail_id))


def _state_is(state: InviteState, now: datetime):
    """The SQL form of domain.invites.state_of for one state (tests/adapters check both agree)."""
    used, revoked = InviteRow.used_at.is_not(None), InviteRow.revoked_at.is_not(None)
    bounced = OutboxRow.state.in_(_PROBLEMS)
    earlier = {
        InviteState.USED: [],
        InviteState.REVOKED: [used],
        InviteState.BOUNCED: [used, revoked],
        InviteState.EXPIRED: [used, revoked, bounced],
        InviteState.OPENED: [used, revoked, bounced, InviteRow.expires_at <= now],
        InviteState.SENT: [used, revoked, bounced, InviteRow.expires_at <= now],
    }[state]
    own = {
        InviteState.USED: used, InviteState.REVOKED: revoked, InviteState.BOUNCED: bounced,
        InviteState.EXPIRED: InviteRow.expires_at <= now, InviteState.OPENED: InviteRow.opened_at.is_not(None),
        InviteState.SENT: InviteRow.opened_at.is_(None),
    }[state]
    # A NULL mail state makes `bounced` NULL, and NOT NULL is NULL: coalesce so a missing mail counts as false.
    return and_(own, *(not_(func.coalesce(c, False)) for c in earlier))


def _usable(now: datetime):
    """Invites whose link still leads to a sign-in (sent or opened)."""
    return and_(InviteRow.used_at.is_(None), InviteRow.revoked_at.is_(None), InviteRow.expires_at > now)


class Invites:
    """The invite table inside one transaction (a unit of work's, or one verb's of InviteStore)."""

    def __init__(self, session: Session):
        self.session = session

    def add_many(self, invites: list[dict], *, created_at: datetime, created_by: str, reason: str,
                 expires_at: datetime, batch_id: int | None = None) -> list[InviteRow]:
        """Write new invites, each a dict of token_hash, upn and sealed_token, in one flush; return their rows."""
        rows = [InviteRow(token_hash=i["token_hash"], upn=Upn(i["upn"]), created_at=created_at,
                          created_by=created_by[:320], reason=reason, expires_at=expires_at, revoked_by="",
                          batch_id=batch_id, sealed_token=i["sealed_token"]) for i in invites]
        self.session.add_all(rows)
        self.session.flush()
        return rows

    def views(self, invite_ids: list[int]) -> list[InviteView]:
        """Return invites with their mail's state, in the order of the ids given (read in chunks)."""
        found: dict[int, InviteView] = {}
        for start in range(0, len(invite_ids), CHUNK):
            chunk = invite_ids[start:start + CHUNK]
            found.update((row.id, _view(row, state, error))
                         for row, state, error in self.session.execute(_with_mail().where(InviteRow.id.in_(chunk))))
        return [found[i] for i in invite_ids]

    def get(self, invite_id: int) -> InviteView | None:
        """Return one invite with its mail's state, or None."""
        found = self.session.execute(_with_mail().where(InviteRow.id == invite_id)).first()
        return _view(*found) if found else None

    def by_hash(self, token_hash: str) -> InviteView | None:
        """Return the invite a token's hash names, or None."""
        found = self.session.execute(_with_mail().where(InviteRow.token_hash == token_hash)).first()
        return _view(*found) if found else None

    def usable_for(self, upns: list[str], now: datetime) -> list[tuple[int, Upn]]:
        """Return (id, upn) of the students' invites whose link still works (read in chunks)."""
        found: list[tuple[int, Upn]] = []
        for start in range(0, len(upns), CHUNK):
            chunk = [Upn(u) for u in upns[start:start + CHUNK]]
            found += [(i, Upn(u)) for i, u in self.session.execute(
                select(InviteRow.id, InviteRow.upn).where(InviteRow.upn.in_(chunk), _usable(now)))]
        return found

    def usable_in_batch(self, batch_id: int, now: datetime) -> list[int]:
        """Return the ids of a batch's invites whose link still works."""
        return list(self.session.scalars(select(InviteRow.id).where(InviteRow.batch_id == batch_id,
                                                                    _usable(now))))

    def mark_opened(self, invite_id: int, at: datetime) -> bool:
        """Record the first "Continue" on a live invite; False if it was opened before or is no longer live."""
        return self.session.execute(update(InviteRow).where(
            InviteRow.id == invite_id, InviteRow.opened_at.is_(None), _usable(at),
        ).values(opened_at=at)).rowcount == 1

    def mark_used(self, invite_id: int, upn: str, at: datetime) -> bool:
        """Spend a live invite for its own student (compare-and-set); False if it is not live or not theirs."""
        return self.session.execute(update(InviteRow).where(
            InviteRow.id == invite_id, InviteRow.upn == Upn(upn), _usable(at),
        ).values(used_at=at, opened_at=func.coalesce(InviteRow.opened_at, at), sealed_token=None)).rowcount == 1

    def revoke(self, invite_ids: list[int], at: datetime, by: str) -> list[int]:
        """Take back the invites that are still unused and not revoked; return the ids this call revoked."""
        revoked: list[int] = []
        for start in range(0, len(invite_ids), CHUNK):
            live = and_(InviteRow.id.in_(invite_ids[start:start + CHUNK]), InviteRow.used_at.is_(None),
                        InviteRow.revoked_at.is_(None))
            ids = list(self.session.scalars(select(InviteRow.id).where(live).with_for_update()))
            if ids:
                self.session.execute(update(InviteRow).where(InviteRow.id.in_(ids), live).values(
                    revoked_at=at, revoked_by=by[:320], sealed_token=None))
            revoked += ids
        return revoked

    def sealed_token(self, invite_id: int) -> str | None:
        """Return the sealed token of an invite whose mail has not gone out yet (None once erased)."""
        return self.session.scalar(select(InviteRow.sealed_token).where(InviteRow.id == invite_id))


class InviteStore:
    """The invite rows, with the verbs the invite use cases and the desk's list need."""

    def __init__(self, store: Database):
        self.store = store

    def get(self, invite_id: int) -> InviteView | None:
        """Return one invite, or None."""
        with self.store._tx() as s:  # noqa: SLF001 - the store's own transaction helper
            return Invites(s).get(invite_id)

    def by_hash(self, token_hash: str) -> InviteView | None:
        """Return the invite a token's hash names, or None."""
        with self.store._tx() as s:  # noqa: SLF001
            return Invites(s).by_hash(token_hash)

    def search(self, query: InviteFilter, now: datetime, *, before_id: int | None = None,
               limit: int = 50) -> list[InviteView]:
        """Return the invites a filter selects, newest first, one keyset page at a time."""
        select_ = _with_mail().order_by(InviteRow.id.desc()).limit(limit)
        if before_id is not None:
            select_ = select_.where(InviteRow.id < before_id)
        if query.upn:
            select_ = select_.where(InviteRow.upn == (Upn.parse(query.upn) or query.upn))
        if query.batch_id is not None:
            select_ = select_.where(InviteRow.batch_id == query.batch_id)
        if query.state is not None:
            select_ = select_.where(_state_is(query.state, now))
        with self.store._tx() as s:  # noqa: SLF001
            return [_view(*found) for found in s.execute(select_)]

    def counts(self, now: datetime) -> dict[InviteState, int]:
        """Count the invites in each state now (for /metrics): one pass over the table, no GROUP BY on a bound time."""
        sums = [func.coalesce(func.sum(case((_state_is(state, now), 1), else_=0)), 0) for state in InviteState]
        query = select(*sums).select_from(InviteRow).outerjoin(OutboxRow, OutboxRow.id == InviteRow.mail_id)
        with self.store._tx() as s:  # noqa: SLF001
            return dict(zip(InviteState, (int(n) for n in s.execute(query).one())))

    def with_seal(self, invite_id: int) -> tuple[InviteView | None, str | None]:
        """Return an invite and its sealed token (None once erased), read in one transaction."""
        with self.store._tx() as s:  # noqa: SLF001
            rows = Invites(s)
            invite = rows.get(invite_id)
            return invite, rows.sealed_token(invite_id) if invite is not None else None

    def erase_seals(self, now: datetime) -> int:
        """Erase the sealed token of every invite nothing will send any more; return how many.

        That is: its mail is done (sent, bounced, failed) or no longer in the outbox, or the invite expired.
        """
        done = select(OutboxRow.id).where(OutboxRow.state.in_(_DONE))
        in_outbox = select(OutboxRow.id)
        with self.store._tx(write=True) as s:  # noqa: SLF001
            return s.execute(update(InviteRow).where(
                InviteRow.sealed_token.is_not(None),
                or_(InviteRow.mail_id.in_(done), InviteRow.mail_id.not_in(in_outbox), InviteRow.expires_at <= now),
            ).values(sealed_token=None)).rowcount

    def purge_ended(self, before: datetime, limit: int) -> int:
        """Delete at most limit invites that ended (used, revoked or expired) before before; return how many."""
        ended = or_(InviteRow.used_at < before, InviteRow.revoked_at < before, InviteRow.expires_at < before)
        return self.store.delete_oldest(InviteRow.id, ended, order_by=InviteRow.id, limit=limit)
