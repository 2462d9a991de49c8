"""Who signed in, as the identity provider vouched for it, and why a sign-in failed."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping


class SignInError(Exception):
    """Sign-in failed; `str(error)` is safe to show to the person, `code` tells the cause to the code."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SignedInUser:
    """Who signed in, from a verified id_token. No token is kept."""

    upn: str
    display_name: str
    subject: str
    object_id: str = ""  # Entra oid; empty under AD FS
    tenant_id: str = ""
    issued_at: datetime | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
