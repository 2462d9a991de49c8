"""Kiosks as use cases: the service desk enrols and revokes a device; each kiosk request proves it still works."""
from __future__ import annotations

from datetime import datetime
from typing import Callable, Protocol

from app.domain.actors import Actor
from app.domain.grants import utc_now
from app.domain.kiosks import Kiosk, KioskError, kiosk_name
from app.domain.ports import AuditWriter
from app.domain.sessions import new_token, token_hash, well_formed
from app.domain.staff import acts_for_desk
from app.services.refusals import audited


class KioskTable(Protocol):
    def enrol_kiosk(self, name: str, token_hash: str, *, actor: Actor, at: datetime, client: str) -> Kiosk: ...
    def revoke_kiosk(self, kiosk_id: int, *, actor: Actor, at: datetime, client: str) -> Kiosk | None: ...
    def kiosk_by_token_hash(self, token_hash: str) -> Kiosk | None: ...
    def touch_kiosk(self, kiosk_id: int, at: datetime) -> None: ...
    def kiosks(self) -> list[Kiosk]: ...


class KioskService:
    """Enrol, revoke and recognise kiosks; the browser only ever holds the random credential."""

    def __init__(self, table: KioskTable, audit: AuditWriter, clock: Callable[[], datetime] | None = None):
        self.table = table
        self.audit = audit
        self.clock = clock or utc_now

    def _check_desk(self, actor: Actor, action: str, client: str, **detail) -> None:
        """Only the service desk's acting role (with a reason) enrols or revokes; refusals are audited."""
        if not acts_for_desk(actor):
            self.refuse(actor, action, "read_only", client=client, **detail)

    def refuse(self, actor: Actor, action: str, code: str, *, client: str, **detail) -> None:
        """Audit a refused kiosk request and raise KioskError(code)."""
        raise audited(KioskError, self.audit, actor, action, code, client=client, severity="warning", **detail)

    def enrol(self, actor: Actor, name: str, *, client: str = "") -> tuple[Kiosk, str]:
        """Enrol the device as a kiosk called name; return it and the credential for its browser (shown once)."""
        self._check_desk(actor, "kiosk.enrol", client)
        try:
            clean = kiosk_name(name)
        except KioskError as refused:
            self.refuse(actor, "kiosk.enrol", refused.code, client=client, given_name=(name or "")[:80])
        credential = new_token()
        kiosk = self.table.enrol_kiosk(clean, token_hash(credential), actor=actor, at=self.clock(), client=client)
        return kiosk, credential

    def revoke(self, actor: Actor, kiosk_id: int, *, client: str = "") -> Kiosk:
        """Revoke a kiosk at once: its next request is refused and its student session ends."""
        self._check_desk(actor, "kiosk.revoke", client, kiosk_id=kiosk_id)
        revoked = self.table.revoke_kiosk(kiosk_id, actor=actor, at=self.clock(), client=client)
        if revoked is None:
            self.refuse(actor, "kiosk.revoke", "not_active", client=client, kiosk_id=kiosk_id)
        return revoked

    def device(self, credential: str | None) -> Kiosk | None:
        """Return the working kiosk this browser's credential names, or None (unknown, junk or revoked)."""
        if not well_formed(credential):
            return None
        kiosk = self.table.kiosk_by_token_hash(token_hash(credential or ""))
        if kiosk is None or not kiosk.active:
            return None
        now = self.clock()
        if kiosk.needs_touch(now):
            self.table.touch_kiosk(kiosk.id, now)
        return kiosk

    def kiosks(self) -> list[Kiosk]:
        """Return every kiosk for the console's list."""
        return self.table.kiosks()
