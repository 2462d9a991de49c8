"""Send what the outbox holds: claim due mails, render them, hand them to SMTP, record each outcome.

Delivery is at-least-once: a mail is marked sent only after the server accepted it, so a sender that dies
between the server's "250 accepted" and that mark leaves the claim to expire and the mail goes out again,
with the same Message-ID (mail clients and many servers drop the copy). The window is one database write
long; losing a security notice would be worse than a rare duplicate of it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Sequence

from app.config import language_of
from app.domain.actors import Actor, ActorKind
from app.domain.directory import DirectoryError
from app.domain.grants import utc_now
from app.domain.mail import (
    MailConfigError,
    MailError,
    MailRecord,
    MailState,
    OutgoingMail,
    gives_up,
    retry_delay,
    valid_address,
)
from app.domain.ports import Mailer, MailTemplates, OutboxStore
from app.services.events import Events, MailPassEvent

log = logging.getLogger(__name__)
MAILER = Actor(ActorKind.WORKER, "mailer")  # the worker's mail pass, as the audit trail names it
BATCH_SIZE = 50  # mails claimed at once (and sent over one connection)
MAILS_PER_PASS = 200  # a pass stops here, so the worker's other work keeps its rhythm
CLAIM_SECONDS = 600.0  # longer than a batch can take; a dead sender's mails wait this long at most


class Undeliverable(Exception):
    """The mail can never go out (no address, unknown person, no template): it ends as failed."""


@dataclass
class MailReport:
    """What one pass did, for logs and tests."""

    sent: int = 0
    retried: int = 0
    bounced: int = 0
    failed: int = 0
    untried: int = 0  # given back without an attempt, because the server as a whole failed
    seconds: float = 0.0

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.bounced + self.failed + self.untried

    def counts(self) -> dict[str, int]:
        """Return how each handled mail went, by outcome (for the mail pass's event)."""
        return {"sent": self.sent, "retried": self.retried, "bounced": self.bounced, "failed": self.failed,
                "untried": self.untried}

    def summary(self) -> str:
        """Return one log line."""
        return (f"sent={self.sent} retried={self.retried} bounced={self.bounced} failed={self.failed} "
                f"untried={self.untried} seconds={self.seconds:.2f}")


class OutboxSender:
    """The worker's mail pass."""

    def __init__(self, outbox: OutboxStore, mailer: Mailer, templates: MailTemplates, directory, *,
                 language: str = "en", clock: Callable[[], datetime] = utc_now, batch_size: int = BATCH_SIZE,
                 claim_seconds: float = CLAIM_SECONDS, expanders: Sequence[Any] = (), events: Events | None = None):
        self.outbox = outbox
        self.mailer = mailer
        self.templates = templates
        self.directory = directory
        self.language = language
        self.clock = clock
        self.batch_size = batch_size
        self.claim_seconds = claim_seconds
        # Values only known when sending (an invite's link: never stored in the outbox). Each has params(mail),
        # a dict of values for the templates (empty if the mail is not its kind; LookupError: it can never go),
        # and settled(), called after each pass to forget what it kept for mails that are done.
        self.expanders = tuple(expanders)
        self.events = events  # told how each pass went (metrics listen)

    def send_due(self, limit: int = MAILS_PER_PASS) -> MailReport:
        """Send due mails, batch by batch, until none is due, `limit` are handled or the server fails."""
        started = time.monotonic()
        report = MailReport()
        while report.handled < limit:
            batch = self.outbox.claim_due(min(self.batch_size, limit - report.handled), self.claim_seconds)
            if not batch or not self._send_batch(batch, report):
                break
        for expander in self.expanders:
            try:
                expander.settled()
            except Exception:  # the next pass tries again; nothing is lost by waiting
                log.exception("mail: could not settle %s", type(expander).__name__)
        report.seconds = time.monotonic() - started
        if report.handled:
            log.info("mail pass: %s", report.summary())
            if self.events is not None:
                self.events.emit(self.events.mail_pass_done, self, MailPassEvent(report.counts()))
        return report

    def _send_batch(self, batch: list[MailRecord], report: MailReport) -> bool:
        """Send one claimed batch over one connection; False if the server failed as a whole (stop for now)."""
        with self.mailer.session() as session:
            for position, mail in enumerate(batch):
                try:
                    outgoing = self._compose(mail)
                except Undeliverable as exc:
                    self._end(mail, MailState.FAILED, str(exc), None, report)
                    continue
                except DirectoryError as exc:  # the address cannot be looked up now: later
                    self._retry(mail, f"directory: {exc}", None, report)
                    continue
                try:
                    session.send(outgoing)
                except MailError as exc:
                    if exc.permanent:
                        self._end(mail, MailState.BOUNCED, str(exc), exc.code, report)
                    else:
                        next_at = self._retry(mail, str(exc), exc.code, report)
                    if exc.server_wide:
                        if isinstance(exc, MailConfigError):
                            log.error("mail: the SMTP settings do not work, mail waits in the outbox: %s", exc)
                        for rest in batch[position + 1:]:  # they would fail alike: back to the queue, untried
                            self.outbox.mark_untried(rest, at=next_at if not exc.permanent else self.clock())
                            report.untried += 1
                        return False
                    continue
                if not self.outbox.mark_sent(mail):
                    # Our claim ran out before the server accepted it and another sender may send it too.
                    log.warning("mail %s was sent after its claim ran out; it may arrive twice", mail.id)
                report.sent += 1
        return True

    def _compose(self, mail: MailRecord) -> OutgoingMail:
        """Find the address and language, render the templates."""
        if not self.templates.exists(mail.kind):
            raise Undeliverable(f"no templates for mail of kind {mail.kind!r}")
        address, language, name = mail.to, language_of(mail.locale), ""
        if mail.upn and (not address or not language):
            user = self.directory.find_user(mail.upn)
            if user is None and not address:
                raise Undeliverable("the person is not in the directory")
            if user is not None:
                address = address or user.mail
                language = language or language_of(user.preferred_language)
                name = user.display_name
        if not address:
            raise Undeliverable("the directory has no mail address for this person")
        if not valid_address(address):
            raise Undeliverable(f"not a usable mail address: {address!r}")
        params = {"name": name or (mail.upn or address).split("@")[0], "upn": mail.upn or "", **mail.params}
        for expander in self.expanders:
            try:
                params.update(expander.params(mail))
            except LookupError as exc:
                raise Undeliverable(str(exc)) from None
        rendered = self.templates.render(mail.kind, language or self.language, params)
        return OutgoingMail(message_id=mail.message_id, to=address, subject=rendered.subject,
                            text=rendered.text, html=rendered.html)

    def _retry(self, mail: MailRecord, error: str, code: int | None, report: MailReport) -> datetime:
        now = self.clock()
        if gives_up(mail.queued_at, now):
            self._end(mail, MailState.FAILED, f"gave up after {mail.attempts} attempts; last: {error}", code, report)
            return now
        next_at = now + retry_delay(mail.attempts)
        self.outbox.mark_retry(mail, error=error, code=code, at=next_at)
        report.retried += 1
        log.warning("mail %s (%s) not sent, attempt %d, next at %s: %s", mail.id, mail.kind, mail.attempts,
                    next_at.isoformat(timespec="seconds"), error)
        return next_at

    def _end(self, mail: MailRecord, state: MailState, error: str, code: int | None, report: MailReport) -> None:
        self.outbox.mark_ended(mail, state, error=error, code=code)
        if state is MailState.BOUNCED:
            report.bounced += 1
        else:
            report.failed += 1
        log.warning("mail %s (%s) %s: %s", mail.id, mail.kind, state.value, error)
        try:
            self.outbox.store.audit(MAILER, f"mail.{state.value}", mail.upn, outcome="error", mail_id=mail.id,
                                    kind=mail.kind, smtp_code=code, error=error)
        except Exception as exc:  # the record of the mail itself is already written
            log.warning("mail: could not audit %s of mail %s: %s", state.value, mail.id, exc)
