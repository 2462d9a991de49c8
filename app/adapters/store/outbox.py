"""The outbox table: mail queued in the transaction of what caused it, claimed by compare-and-set, never lost.

A row goes queued -> sending (claimed by one sender until claimed_until) -> sent | bounced | failed, or back
to queued with a later next_attempt_at. A sender that dies leaves its claim to expire; the next one takes it.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Index, Integer, String, Text, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.adapters.store.audit import redact
from app.adapters.store.base import Base, Database, UTCDateTime
from app.domain.mail import PROBLEM_STATES, MailRecord, MailState, new_message_id
from app.domain.upn import Upn

MAX_ERROR_CHARS = 500


class OutboxRow(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    upn: Mapped[str | None] = mapped_column(String(320), nullable=True, index=True)
    to_address: Mapped[str] = mapped_column(String(254), default="")
    locale: Mapped[str] = mapped_column(String(16), default="")
    params: Mapped[str] = mapped_column(Text, default="{}")
    dedupe_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    message_id: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), index=True)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claim: Mapped[str] = mapped_column(String(64), default="")
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        Index("uq_outbox_message_id", "message_id", unique=True),
        Index("uq_outbox_dedupe_key", "dedupe_key", unique=True),  # NULLs never collide (both backends)
    )

    def view(self) -> MailRecord:
        return MailRecord(
            id=self.id, kind=self.kind, upn=self.upn, to=self.to_address, locale=self.locale,
            params=json.loads(self.params or "{}"), message_id=self.message_id, state=MailState(self.state),
            queued_at=self.queued_at, next_attempt_at=self.next_attempt_at, attempts=self.attempts,
            claim=self.claim, sent_at=self.sent_at, last_code=self.last_code, last_error=self.last_error,
        )


def _due(now: datetime):
    """Rows a sender may take now: queued and due, or claimed by a sender whose claim ran out (it died)."""
    return or_(
        and_(OutboxRow.state == MailState.QUEUED.value, OutboxRow.next_attempt_at <= now),
        and_(OutboxRow.state == MailState.SENDING.value, OutboxRow.claimed_until < now),
    )


class OutboxStore:
    """The outbox rows, with the verbs the mail use cases and the sender need."""

    def __init__(self, store: Database, *, sender: str = ""):
        self.store = store
        self.sender = sender  # its domain names the Message-IDs

    def queue(self, kind: str, *, upn: str | None = None, to: str = "", locale: str = "",
              params: dict[str, Any] | None = None, dedupe_key: str | None = None,
              session: Session | None = None) -> bool:
        """Queue one mail; inside `session` it commits or rolls back with the caller's change. False: a duplicate.

        `dedupe_key` names the cause (e.g. "security_unlocked:grant:42"): the same cause queues one mail only.
        """
        row = self._row(kind, upn=upn, to=to, locale=locale, params=params, dedupe_key=dedupe_key)
        if session is not None:
            if dedupe_key and session.scalar(select(OutboxRow.id).where(OutboxRow.dedupe_key == dedupe_key)):
                return False
            with session.begin_nested():  # a racing duplicate rolls back only this row, not the caller's change
                session.add(row)
                try:
                    session.flush()
                except IntegrityError:
                    return False
            return True
        try:
            with self.store._tx(write=True) as s:  # noqa: SLF001 - the store's own transaction helper
                s.add(row)
            return True
        except IntegrityError:
            return False

    def queue_many(self, kind: str, mails: list[tuple[str, str, dict[str, Any], str]], *, session: Session,
                   locale: str = "") -> list[int]:
        """Queue many mails of one kind in the caller's transaction, as (upn, address or "", params, dedupe_key)
        of NEW causes; return their ids in order (one flush, however many: a batch's invites).

        A cause already queued raises IntegrityError and rolls back the caller's change: the caller names causes
        that cannot exist yet (e.g. a row it just made).
        """
        rows = [self._row(kind, upn=upn, to=to, locale=locale, params=params, dedupe_key=key)
                for upn, to, params, key in mails]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]

    def _row(self, kind: str, *, upn: str | None, to: str = "", locale: str, params: dict[str, Any] | None,
             dedupe_key: str | None) -> OutboxRow:
        """Make one queued mail's row, due now, its secret-looking values redacted."""
        if not to and not upn:
            raise ValueError("a mail needs an address or a person whose directory entry has one")
        now = self.store.clock()
        return OutboxRow(
            kind=kind, upn=Upn(upn) if upn else None, to_address=to, locale=locale,
            params=json.dumps(redact(params or {}), default=str, sort_keys=True), dedupe_key=dedupe_key,
            message_id=new_message_id(self.sender), state=MailState.QUEUED.value, queued_at=now,
            next_attempt_at=now, attempts=0, claim="", last_error="",
        )

    def locale_of(self, dedupe_key: str, session: Session | None = None) -> str:
        """Return the language a mail for this cause was queued in ("" if none was, or it named none)."""
        return self._of_cause(OutboxRow.locale, dedupe_key, session) or ""

    def _of_cause(self, column, dedupe_key: str, session: Session | None) -> Any:
        """Read one column of the mail queued for a cause (in the caller's transaction, if given)."""
        query = select(column).where(OutboxRow.dedupe_key == dedupe_key)
        if session is not None:
            return session.scalar(query)
        with self.store._tx() as s:  # noqa: SLF001
            return s.scalar(query)

    def claim_due(self, limit: int, claim_seconds: float) -> list[MailRecord]:
        """Take up to `limit` due mails for one sender (compare-and-set: two senders never get the same one)."""
        now = self.store.clock()
        token = uuid.uuid4().hex
        with self.store._tx(write=True) as s:  # noqa: SLF001
            ids = list(s.scalars(select(OutboxRow.id).where(_due(now))
                                 .order_by(OutboxRow.next_attempt_at, OutboxRow.id).limit(limit)))
            if not ids:
                return []
            # The WHERE is evaluated again under the row locks: a row another sender took meanwhile is skipped.
            s.execute(update(OutboxRow).where(OutboxRow.id.in_(ids), _due(now)).values(
                state=MailState.SENDING.value, claim=token, claimed_until=now + timedelta(seconds=claim_seconds),
                attempts=OutboxRow.attempts + 1))
            rows = s.scalars(select(OutboxRow).where(OutboxRow.claim == token).order_by(OutboxRow.id))
            return [r.view() for r in rows]

    def _settle(self, mail: MailRecord, **values: Any) -> bool:
        """Change a mail this sender still holds (its claim); False if the claim was lost to another sender."""
        with self.store._tx(write=True) as s:  # noqa: SLF001
            result = s.execute(update(OutboxRow).where(
                OutboxRow.id == mail.id, OutboxRow.claim == mail.claim, OutboxRow.state == MailState.SENDING.value,
            ).values(claimed_until=None, **values))
            return result.rowcount == 1

    def mark_sent(self, mail: MailRecord) -> bool:
        """Record that the server accepted the mail."""
        return self._settle(mail, state=MailState.SENT.value, sent_at=self.store.clock(), last_code=None,
                            last_error="")

    def mark_retry(self, mail: MailRecord, *, error: str, code: int | None, at: datetime) -> bool:
        """Put the mail back in the queue for another attempt at `at`."""
        return self._settle(mail, state=MailState.QUEUED.value, next_attempt_at=at, last_code=code,
                            last_error=error[:MAX_ERROR_CHARS])

    def mark_untried(self, mail: MailRecord, *, at: datetime) -> bool:
        """Give back a claimed mail no attempt was made for (the attempt count stays as it was)."""
        return self._settle(mail, state=MailState.QUEUED.value, next_attempt_at=at,
                            attempts=OutboxRow.attempts - 1)

    def mark_ended(self, mail: MailRecord, state: MailState, *, error: str, code: int | None = None) -> bool:
        """Record that the mail will never go out: bounced (the server refused it) or failed (we gave up)."""
        if state not in PROBLEM_STATES:
            raise ValueError(f"a mail ends as bounced or failed, not {state.value}")
        return self._settle(mail, state=state.value, last_code=code, last_error=error[:MAX_ERROR_CHARS])

    def purge_done(self, before: datetime, limit: int) -> int:
        """Delete at most limit mails that were sent, bounced or given up on before before; return how many."""
        done = [state.value for state in MailState if state.done]
        return self.store.delete_oldest(OutboxRow.id, OutboxRow.state.in_(done),
                                        func.coalesce(OutboxRow.sent_at, OutboxRow.queued_at) < before,
                                        order_by=OutboxRow.id, limit=limit)

    def get(self, mail_id: int) -> MailRecord | None:
        """Return one mail, or None."""
        with self.store._tx() as s:  # noqa: SLF001
            row = s.get(OutboxRow, mail_id)
            return row.view() if row else None

    def mails_for(self, upn: str, limit: int = 20) -> list[MailRecord]:
        """Return the mails about one person, newest first (for the desk)."""
        with self.store._tx() as s:  # noqa: SLF001
            rows = s.scalars(select(OutboxRow).where(OutboxRow.upn == Upn(upn))
                             .order_by(OutboxRow.id.desc()).limit(limit))
            return [r.view() for r in rows]

    def problems(self, limit: int = 100) -> list[MailRecord]:
        """Return the mails that bounced or failed, newest first (for the desk)."""
        with self.store._tx() as s:  # noqa: SLF001
            rows = s.scalars(select(OutboxRow).where(OutboxRow.state.in_([p.value for p in PROBLEM_STATES]))
                             .order_by(OutboxRow.id.desc()).limit(limit))
            return [r.view() for r in rows]

    def counts(self) -> dict[MailState, int]:
        """Return how many mails are in each state."""
        with self.store._tx() as s:  # noqa: SLF001
            found = dict(s.execute(select(OutboxRow.state, func.count()).group_by(OutboxRow.state)).all())
        return {state: found.get(state.value, 0) for state in MailState}
