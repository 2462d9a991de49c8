"""Portal sessions, pure: kinds, lifetimes, and whether a session record still lets its holder in. No I/O.

A session is a server-side record; the browser holds only a random token, and the record is stored under a
hash of it, so a copy of the database signs nobody in. A record ends when it is revoked (sign-out, a new
sign-in in the same browser, the service desk), after its idle limit, or at its absolute end, whichever
comes first.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Mapping

TOKEN_BYTES = 32  # 256 bits from the OS's generator: guessing one is hopeless, so a plain hash suffices
# Last-seen is written at most this often: the guide page polls every 2 s, so a write per poll would be a
# write every 2 s per student. The idle limit is therefore enforced to within this many seconds.
TOUCH_EVERY_SECONDS = 60
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{20,64}")  # what secrets.token_urlsafe makes, with room to spare


class SessionKind(str, Enum):
    """Who a session belongs to; each kind has its own limits."""

    STUDENT = "student"
    STAFF = "staff"  # the helpdesk console: signed in with MFA, shorter absolute lifetime
    KIOSK = "kiosk"  # one student on an enrolled shared device: short idle limit


class Verdict(str, Enum):
    """Whether a session record lets its holder in, and if not, why."""

    VALID = "valid"
    UNKNOWN = "unknown"  # no record under this token (never issued, or purged)
    REVOKED = "revoked"  # signed out, replaced by a newer sign-in, or ended by the service desk
    IDLE = "idle"  # nothing happened for longer than the idle limit
    EXPIRED = "expired"  # past the absolute end, however active


@dataclass(frozen=True)
class Lifetime:
    """How long a session of one kind may sit idle, and how long it may live at most."""

    idle: timedelta
    absolute: timedelta

    def __post_init__(self) -> None:
        if self.idle <= timedelta(0) or self.absolute <= timedelta(0):
            raise ValueError("session lifetimes must be positive")


@dataclass(frozen=True)
class SessionRecord:
    """One portal session as the store keeps it (the token itself is never kept, only its hash)."""

    token_hash: str
    kind: SessionKind
    upn: str
    display_name: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime  # the absolute end, fixed at sign-in
    revoked_at: datetime | None = None
    mfa: bool = False  # the id_token showed multi-factor authentication (staff pages require it)
    client_address: str = ""  # where the sign-in came from, for the audit and the service desk


def new_token() -> str:
    """Return a fresh random session token for the browser's cookie."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """Return the hash a session is stored under (the token itself never reaches the database)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def well_formed(token: str | None) -> bool:
    """Tell whether a cookie value could be a token at all (spares the database a read for junk)."""
    return bool(token) and _TOKEN_SHAPE.fullmatch(token) is not None


class SessionPolicy:
    """The lifetimes of every session kind; a kind without one cannot be started."""

    def __init__(self, lifetimes: Mapping[SessionKind, Lifetime], *, touch_every_seconds: float = TOUCH_EVERY_SECONDS):
        self.lifetimes = dict(lifetimes)
        self.touch_every = timedelta(seconds=touch_every_seconds)

    def lifetime(self, kind: SessionKind) -> Lifetime:
        """Return a kind's lifetime; raise ValueError for a kind this portal does not offer."""
        try:
            return self.lifetimes[kind]
        except KeyError:
            raise ValueError(f"no lifetime is configured for {kind.value} sessions") from None

    def expires_at(self, kind: SessionKind, now: datetime) -> datetime:
        """Return the absolute end of a session of this kind started now."""
        return now + self.lifetime(kind).absolute

    def verdict(self, record: SessionRecord | None, now: datetime) -> Verdict:
        """Decide whether a record lets its holder in now."""
        if record is None:
            return Verdict.UNKNOWN
        if record.revoked_at is not None:
            return Verdict.REVOKED
        if now >= record.expires_at:
            return Verdict.EXPIRED
        # The idle limit is today's setting, so shortening it takes effect for sessions already open.
        if now - record.last_seen_at >= self.lifetime(record.kind).idle:
            return Verdict.IDLE
        return Verdict.VALID

    def needs_touch(self, record: SessionRecord, now: datetime) -> bool:
        """Tell whether last-seen is old enough to be written again (at most once per touch interval)."""
        # A short idle limit (a kiosk's two minutes) needs a finer last-seen than a student's twenty minutes.
        return now - record.last_seen_at >= min(self.touch_every, self.lifetime(record.kind).idle / 4)
