"""Mail, pure: an outgoing message, what a failed attempt means, the outbox lifecycle and its backoff. No I/O."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

# A retry waits 30 s, then 1, 2, 4 ... minutes, never more than an hour; after 3 days the outbox gives up
# (RFC 5321 section 4.5.4.1 suggests giving up after 4 to 5 days; a security notice older than 3 days is stale).
RETRY_BASE_SECONDS = 30.0
RETRY_CAP_SECONDS = 3600.0
GIVE_UP_AFTER = timedelta(days=3)
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z0-9-]{2,}")


class MailState(str, Enum):
    """Where a queued mail is: queued -> sending -> sent | bounced | failed (sending falls back to queued)."""

    QUEUED = "queued"  # waiting for its first or next attempt (next_attempt_at)
    SENDING = "sending"  # claimed by one sender until claimed_until; an expired claim may be taken again
    SENT = "sent"  # the SMTP server accepted it
    BOUNCED = "bounced"  # the server refused it for good (5xx for the recipient or the message)
    FAILED = "failed"  # the portal gave up: no address to send to, or still undeliverable after GIVE_UP_AFTER

    @property
    def done(self) -> bool:
        """Tell whether no attempt will ever be made again."""
        return self in DONE_STATES


DONE_STATES = frozenset({MailState.SENT, MailState.BOUNCED, MailState.FAILED})
PROBLEM_STATES = frozenset({MailState.BOUNCED, MailState.FAILED})  # what the desk is shown


class MailError(Exception):
    """An attempt to send failed; `code` is the SMTP reply code when the server gave one.

    `server_wide` says the failure is not about this message (the server is down, dropped the line, or our
    settings are wrong): the messages after it would fail the same way, so a sender stops for now.
    """

    permanent = False  # True: sending the same mail again cannot succeed

    def __init__(self, message: str, *, code: int | None = None, server_wide: bool = True):
        super().__init__(message)
        self.code = code
        self.server_wide = server_wide


class MailRefused(MailError):
    """The server refused this recipient or this message with a 5xx reply: recorded as bounced, never retried."""

    permanent = True


class MailUnavailable(MailError):
    """No answer worth keeping: a 4xx reply, a refused or dropped connection, a timeout. Retried later."""


class MailConfigError(MailError):
    """The portal's own mail settings do not work (login refused, certificate not trusted, no STARTTLS).

    Retried like an unavailable server, so the queue goes out once an admin fixes the setting; logged loudly.
    """


@dataclass(frozen=True)
class RenderedMail:
    """A mail's subject and its two bodies, as the templates made them."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class OutgoingMail:
    """One rendered message, ready for the SMTP adapter (which adds sender, reply-to and date)."""

    message_id: str  # <...@...>, fixed when queued: every attempt of one mail carries the same one
    to: str
    subject: str
    text: str
    html: str


def retry_delay(attempts: int) -> timedelta:
    """Return how long to wait after the given number of failed attempts (exponential, capped)."""
    if attempts < 1:
        return timedelta(0)
    return timedelta(seconds=min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** min(attempts - 1, 20)))


def gives_up(queued_at: datetime, now: datetime) -> bool:
    """Tell whether a mail has been undeliverable for too long to keep trying."""
    return now - queued_at >= GIVE_UP_AFTER


def new_message_id(sender: str) -> str:
    """Return a unique Message-ID in the sender's domain (RFC 5322), fixed once per queued mail."""
    domain = sender.rpartition("@")[2] or "proofup.invalid"
    return f"<{uuid.uuid4().hex}@{domain}>"


def valid_address(address: str) -> bool:
    """Tell whether a string is one plain mail address (no display name, no list, no header tricks)."""
    return bool(address) and len(address) <= 254 and _ADDRESS.fullmatch(address) is not None


@dataclass(frozen=True)
class MailRecord:
    """A snapshot of one mail in the outbox (what to send, where it stands), safe to pass anywhere."""

    id: int
    kind: str  # which template, e.g. "security_unlocked"
    upn: str | None  # whom it is about
    to: str  # the address; empty: the directory's `mail` attribute of the upn, looked up when sending
    locale: str  # empty: the directory's preferredLanguage, else the portal's mail language
    params: dict
    message_id: str
    state: MailState
    queued_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    claim: str = ""
    sent_at: datetime | None = None
    last_code: int | None = None  # the SMTP reply code of the last failure
    last_error: str = ""  # what the last failure said (never a secret)
