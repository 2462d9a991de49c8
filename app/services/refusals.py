"""How a use case refuses: the refusal goes to the audit trail first, then its exception (app.domain.errors) is raised.

Nothing else changes on a refusal, so the audit line is written in a transaction of its own.
"""
from __future__ import annotations

from typing import Any, TypeVar

from app.domain.actors import Actor
from app.domain.errors import Refused
from app.domain.ports import AuditWriter

R = TypeVar("R", bound=Refused)


def audited(refusal: type[R], trail: AuditWriter, actor: Actor, action: str, code: str, /, *, upn: str | None = None,
            client: str = "", severity: str = "info", **detail: Any) -> R:
    """Audit a refused request and return the refusal to raise (its params: the audit's detail, for the message)."""
    # Positional-only above: the detail may hold any name (a scan's `kind`, a batch's `action`...).
    trail.audit(actor, action, upn, outcome="refused", refusal=code, client=client, severity=severity, **detail)
    return refusal(code, **detail)
