"""A filtered view of the audit trail, as the desk asks for it and the store answers it. No I/O."""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime


@dataclass(frozen=True)
class AuditQuery:
    """Which audit events to show (every field optional; all given ones must hold)."""

    since: datetime | None = None
    until: datetime | None = None
    actor: str = ""  # the actor's id, exactly (a staff UPN, cli:<user>, worker, an address)
    upn: str = ""  # the student the events are about
    action: str = ""  # an event kind ("grant.intent") or a family ending in a dot ("grant.")
    outcome: str = ""  # ok | refused | error | reported

    def given(self) -> dict[str, str]:
        """Return the fields that are set, as text (for the export's own audit event and the page's links)."""
        return {f.name: (v.isoformat() if isinstance(v, datetime) else str(v))
                for f in fields(self) if (v := getattr(self, f.name))}
