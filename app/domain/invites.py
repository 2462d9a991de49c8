"""Invite links, pure: the token, its hash, an invite's one state, and why a token or a sign-in is refused. No I/O.

An invite is a random token mailed to one student. The portal keeps only the token's SHA-256 (like the session
tokens: 256 bits from the OS's generator make a salted or slow hash pointless), so a copy of the database opens
no invite. The token is single use, expires (PROOFUP_INVITE_DAYS), can be revoked, and is bound to one UPN:
the student still signs in, and the sign-in must be the invite's account.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from app.domain.errors import Refused
from app.domain.mail import PROBLEM_STATES, MailState
from app.domain.upn import Upn

TOKEN_BYTES = 32  # secrets.token_urlsafe(32): 256 bits, 43 characters of [A-Za-z0-9_-]
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
HASH_PREFIX_CHARS = 8  # what the audit trail keeps of a refused token's hash: enough to match two lines, no more
DEFAULT_INVITE_DAYS = 7
INVITE_MAIL = "invite"  # the outbox kind (templates/mail/invite.txt and .html)


class InviteState(str, Enum):
    """What the desk sees of an invite, derived from its record and its mail (state_of): never stored."""

    SENT = "sent"  # queued or sent; nobody has pressed "Continue" yet
    OPENED = "opened"  # "Continue" was pressed (a person, not a mail scanner's GET); not yet signed in
    USED = "used"  # the invite's student signed in through it: spent
    EXPIRED = "expired"  # its days ran out unused
    REVOKED = "revoked"  # the desk (or a newer invite, or a closed batch) took it back
    BOUNCED = "bounced"  # its mail never arrived: the server refused it, or the portal gave up

    @property
    def usable(self) -> bool:
        """Tell whether the link still leads to a sign-in."""
        return self in (InviteState.SENT, InviteState.OPENED)


class InviteRefusal(str, Enum):
    """Why a token or a sign-in through it is refused (the audit trail's code; the visitor sees one answer)."""

    MALFORMED = "malformed"  # not even the shape of a token
    UNKNOWN = "unknown"  # no invite has this hash: forged, mistyped, or purged
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"
    BOUNCED = "bounced"  # its mail bounced, so whoever holds the link did not get it from us
    OTHER_ACCOUNT = "other_account"  # signed in, but not as the invite's student: not spent


class InviteError(Refused):
    """An invite cannot be made or changed; `code` says why, `message` in the CLI's words."""


@dataclass(frozen=True)
class InviteView:
    """One invite as the store keeps it (never the token: only its hash) with its mail's state."""

    id: int
    upn: Upn
    created_at: datetime
    created_by: str  # the actor's id
    reason: str
    expires_at: datetime
    opened_at: datetime | None = None
    used_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str = ""
    batch_id: int | None = None
    mail_id: int | None = None
    mail_state: MailState | None = None  # None: the mail is not (or no longer) in the outbox
    mail_error: str = ""

    def state(self, now: datetime) -> InviteState:
        """Return the invite's one state now."""
        return state_of(self, now)


@dataclass(frozen=True)
class InviteFilter:
    """Which invites a list shows: by student, state, batch (each optional)."""

    upn: str = ""
    state: InviteState | None = None
    batch_id: int | None = None


def state_of(invite: InviteView, now: datetime) -> InviteState:
    """Derive the state from the record: spent and taken back first, then the mail, then the clock."""
    if invite.used_at is not None:
        return InviteState.USED
    if invite.revoked_at is not None:
        return InviteState.REVOKED
    if invite.mail_state in PROBLEM_STATES:
        return InviteState.BOUNCED
    if now >= invite.expires_at:
        return InviteState.EXPIRED
    return InviteState.OPENED if invite.opened_at is not None else InviteState.SENT


REFUSAL_FOR = {InviteState.USED: InviteRefusal.USED, InviteState.EXPIRED: InviteRefusal.EXPIRED,
               InviteState.REVOKED: InviteRefusal.REVOKED, InviteState.BOUNCED: InviteRefusal.BOUNCED}


def token_refusal(invite: InviteView | None, now: datetime) -> InviteRefusal | None:
    """Return why a looked-up token cannot be continued (None: it can)."""
    if invite is None:
        return InviteRefusal.UNKNOWN
    return REFUSAL_FOR.get(invite.state(now))


def redeem_refusal(invite: InviteView | None, signed_in: Upn, now: datetime) -> InviteRefusal | None:
    """Return why a sign-in cannot spend this invite (None: it is the invite's student and the invite is live)."""
    refusal = token_refusal(invite, now)
    if refusal is not None:
        return refusal
    return None if invite.upn == Upn(signed_in) else InviteRefusal.OTHER_ACCOUNT


def led_to_unlock(invite: InviteView | None, upn: Upn) -> bool:
    """Tell whether a student's unlock may be credited to this invite: it is theirs and they signed in with it."""
    return invite is not None and invite.upn == Upn(upn) and invite.used_at is not None


def new_token() -> str:
    """Return a fresh invite token (256 random bits, URL-safe)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def well_formed(token: str) -> bool:
    """Tell whether a text has the shape of a token (checked before any lookup: outside values are hostile)."""
    return isinstance(token, str) and TOKEN_SHAPE.fullmatch(token) is not None


def token_hash(token: str) -> str:
    """Return the hex SHA-256 the store keys an invite by."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def hash_prefix(text: str) -> str:
    """Return what the audit trail may keep of a token: a short prefix of its hash (of anything, for junk)."""
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:HASH_PREFIX_CHARS]


def expiry(created_at: datetime, days: int) -> datetime:
    """Return when an invite made now stops working."""
    if days < 1:
        raise InviteError("bad_days", "an invite lasts at least one day")
    return created_at + timedelta(days=days)
