"""Who signed in, as the identity provider vouched for it, and why a sign-in failed."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from app.domain.upn import Upn


class SignInError(Exception):
    """Sign-in failed; `str(error)` is safe to show to the person, `code` tells the cause to the code."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SignedInUser:
    """Who signed in, from a verified id_token. No token is kept."""

    upn: Upn  # normalised here, where the authority's answer enters the portal
    display_name: str
    subject: str
    object_id: str = ""  # Entra oid; empty under AD FS
    tenant_id: str = ""
    issued_at: datetime | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        upn = Upn.parse(self.upn)
        if upn is None:
            raise SignInError("Your account has no user principal name the portal can use. "
                              "Please contact the IT helpdesk.", "no_upn")
        object.__setattr__(self, "upn", upn)
