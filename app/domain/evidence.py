"""What Microsoft Graph tells the portal about a person: methods, sign-ins, devices; and Graph's errors."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping

# Graph @odata.type -> short kind. Source: Graph v1.0 authenticationMethod resource types.
METHOD_KINDS = {
    "#microsoft.graph.passwordAuthenticationMethod": "password",
    "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod": "microsoftAuthenticator",
    "#microsoft.graph.phoneAuthenticationMethod": "phone",
    "#microsoft.graph.fido2AuthenticationMethod": "fido2",
    "#microsoft.graph.softwareOathAuthenticationMethod": "softwareOath",
    "#microsoft.graph.windowsHelloForBusinessAuthenticationMethod": "windowsHelloForBusiness",
    "#microsoft.graph.temporaryAccessPassAuthenticationMethod": "temporaryAccessPass",
    "#microsoft.graph.emailAuthenticationMethod": "email",
    "#microsoft.graph.platformCredentialAuthenticationMethod": "platformCredential",
}
# Methods that satisfy Azure MFA; password, TAP and email (SSPR only) do not.
STRONG_METHOD_KINDS = frozenset(
    {"microsoftAuthenticator", "phone", "fido2", "softwareOath", "windowsHelloForBusiness", "platformCredential"}
)
AUTHENTICATOR_APP_ID = "4813382a-8fa7-425e-ab75-3b753aab3abb"


class GraphError(Exception):
    """A Graph call failed; `status` is the HTTP status (0 when no answer came)."""

    def __init__(self, message: str, status: int = 0, code: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.status in (0, 429, 500, 502, 503, 504)


class GraphThrottled(GraphError):
    """Graph answered 429; retry_after says when to try again."""


class GraphUnavailable(GraphError):
    """Graph did not answer, or answered 5xx."""


@dataclass(frozen=True)
class AuthMethod:
    id: str
    kind: str  # one of METHOD_KINDS' values, or "unknown"
    display_name: str = ""
    created: datetime | None = None

    @property
    def strong(self) -> bool:
        return self.kind in STRONG_METHOD_KINDS


@dataclass(frozen=True)
class SignIn:
    id: str
    created: datetime | None
    app_id: str
    app_display_name: str
    status_code: int  # 0 = success
    client_app: str = ""


@dataclass(frozen=True)
class Device:
    id: str
    display_name: str
    operating_system: str = ""


@dataclass(frozen=True)
class EntraUser:
    id: str
    upn: str
    display_name: str
    account_enabled: bool


@dataclass(frozen=True)
class Evidence:
    """What Graph says about one person, gathered in one $batch round trip."""

    user: EntraUser | None
    methods: tuple[AuthMethod, ...] = ()
    authenticator_sign_ins: tuple[SignIn, ...] = ()
    devices: tuple[Device, ...] = ()
    errors: Mapping[str, GraphError] = field(default_factory=dict)  # part name -> failure
    round_trips: int = 1

    @property
    def strong_methods(self) -> tuple[AuthMethod, ...]:
        return tuple(m for m in self.methods if m.strong)

    @property
    def complete(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class TemporaryAccessPass:
    """A TAP just created. `code` is shown once to its owner and never stored or logged."""

    id: str
    code: str = field(repr=False)
    lifetime_minutes: int = 60
    one_time: bool = True
    start: datetime | None = None
