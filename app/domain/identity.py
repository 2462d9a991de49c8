"""Who signed in, as the identity provider vouched for it, and why a sign-in failed."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Sequence

from app.domain.upn import Upn


MSG_TRY_AGAIN = "Please sign in again. If this keeps happening, contact the IT helpdesk."
# The authority's answer (RFC 6749 4.1.2, OpenID Connect form_post): only these fields are read, each at most
# once, each within its length and characters; nothing else the browser posts goes anywhere.
# state: what MSAL made (URL-safe base64); code: AD FS and Entra codes are URL-safe text of 0.5 to 2 KB;
# error: an RFC 6749 error code; error_description: free text (Entra's has line breaks), only searched for
# Microsoft's reference code and never passed on.
RESPONSE_FIELDS = {
    "state": re.compile(r"[A-Za-z0-9._~-]{1,128}"),
    "code": re.compile(r"[A-Za-z0-9._~+/=*!-]{1,8192}"),
    "error": re.compile(r"[A-Za-z0-9._-]{1,64}"),
    "error_description": re.compile(r".{0,4096}", re.DOTALL),
}


class SignInError(Exception):
    """Sign-in failed; `str(error)` is safe to show to the person, `code` tells the cause to the code.

    `retry_after` (seconds) is set when the sign-in service is busy and said how long to wait; `reason` says
    for the log what was wrong (never a value from the answer).
    """

    def __init__(self, message: str, code: str, retry_after: int | None = None, reason: str = ""):
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after
        self.reason = reason or code


@dataclass(frozen=True)
class AuthorityResponse:
    """The authority's answer to the portal's callback, read and checked once at the edge."""

    state: str
    code: str = ""
    error: str = ""
    error_description: str = field(default="", repr=False)


def read_authority_response(fields: Mapping[str, Sequence[str]]) -> AuthorityResponse:
    """Check the callback's form fields (name -> every value posted) or raise SignInError(code="bad_response")."""
    values: dict[str, str] = {}
    for name, pattern in RESPONSE_FIELDS.items():
        posted = list(fields.get(name, ()))
        if not posted:
            continue
        if len(posted) > 1 or not isinstance(posted[0], str) or not pattern.fullmatch(posted[0]):
            # The reason names the field and the rule, never the value: it may be a code, and it is hostile.
            why = "posted more than once" if len(posted) > 1 else "has a length or characters not allowed"
            raise SignInError("The sign-in answer could not be used. " + MSG_TRY_AGAIN, "bad_response",
                              reason=f"field {name} {why}")
        values[name] = posted[0]
    if not values.get("state") or bool(values.get("code")) == bool(values.get("error")):
        raise SignInError("The sign-in answer could not be used. " + MSG_TRY_AGAIN, "bad_response",
                          reason="it needs a state and either a code or an error")
    return AuthorityResponse(**values)


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
