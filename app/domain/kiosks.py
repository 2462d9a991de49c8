"""Kiosks, pure: an enrolled shared device at an orientation event, its name, and whether it still works. No I/O.

A kiosk is a device, not an actor: the student signs in on it (a kiosk session), and the service desk enrols
and revokes it. The browser holds a random credential; the store keeps only its hash (as for sessions).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.domain.errors import Refused

MAX_NAME = 60
# Last-seen is written at most this often: a kiosk asks for a page every few seconds while a student is at it.
TOUCH_EVERY = timedelta(minutes=1)


class KioskError(Refused):
    """A kiosk request the rules refuse; `code` names why (for the audit trail and the message)."""


@dataclass(frozen=True)
class Kiosk:
    """One enrolled device as the store keeps it (the credential itself is never kept, only its hash)."""

    id: int
    name: str
    enrolled_at: datetime
    enrolled_by: str
    last_seen_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str = ""
    revoke_reason: str = ""

    @property
    def active(self) -> bool:
        """Tell whether the device still works as a kiosk (a revoked one never does again)."""
        return self.revoked_at is None

    def needs_touch(self, now: datetime) -> bool:
        """Tell whether last-seen is old enough to be written again."""
        return self.last_seen_at is None or now - self.last_seen_at >= TOUCH_EVERY


def kiosk_name(text: str) -> str:
    """Return a kiosk's name ("Library 3") with its spaces folded; raise KioskError for an empty or odd one."""
    name = " ".join((text or "").split())
    if not name:
        raise KioskError("no_name")
    if len(name) > MAX_NAME or not name.isprintable():
        raise KioskError("bad_name")
    return name
