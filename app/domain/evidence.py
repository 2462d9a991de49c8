"""What Microsoft Graph tells the portal about a person: methods, sign-ins, devices; and Graph's errors."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping

# Graph @odata.type -> short kind: every authenticationMethod subtype of Graph v1.0 (msgraph-sdk 1.65's
# v1.0 models and learn.microsoft.com/graph/api/resources/authenticationmethods-overview), plus hardware OATH
# tokens (hardwareOathAuthenticationMethod, in beta today). fido2 covers passkeys (device-bound and synced).
METHOD_KINDS = {
    "#microsoft.graph.passwordAuthenticationMethod": "password",
    "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod": "microsoftAuthenticator",
    "#microsoft.graph.phoneAuthenticationMethod": "phone",
    "#microsoft.graph.fido2AuthenticationMethod": "fido2",
    "#microsoft.graph.softwareOathAuthenticationMethod": "softwareOath",
    "#microsoft.graph.hardwareOathAuthenticationMethod": "hardwareOath",
    "#microsoft.graph.windowsHelloForBusinessAuthenticationMethod": "windowsHelloForBusiness",
    "#microsoft.graph.temporaryAccessPassAuthenticationMethod": "temporaryAccessPass",
    "#microsoft.graph.emailAuthenticationMethod": "email",
    "#microsoft.graph.platformCredentialAuthenticationMethod": "platformCredential",
    "#microsoft.graph.qrCodePinAuthenticationMethod": "qrCodePin",
    "#microsoft.graph.externalAuthenticationMethod": "externalAuthentication",
    "#microsoft.graph.resourceAccountKeyAuthenticationMethod": "resourceAccountKey",
}
UNKNOWN_METHOD = "unknown"  # an @odata.type not listed above (or none at all)
# The only kinds that leave a person without a way through MFA, so that the portal may unlock them: the
# password (always there), a Temporary Access Pass (issued by the desk to register), email (password reset
# only) and QR code + PIN (single-factor, for frontline workers). Every other kind, unknown ones included,
# counts as a method: the portal never unlocks on a shape it does not understand.
NOT_MFA_KINDS = frozenset({"password", "temporaryAccessPass", "email", "qrCodePin"})
AUTHENTICATOR_APP_ID = "4813382a-8fa7-425e-ab75-3b753aab3abb"


class GraphError(Exception):
    """A Graph call failed; `status` is the HTTP status (0 when no answer came)."""

    def __init__(self, message: str, status: int = 0, code: str = "", retry_after: float | None = None,
                 graph_message: str = ""):
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.graph_message = graph_message  # Graph's own words (the TAP refusals are told apart by them)

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
    kind: str  # one of METHOD_KINDS' values, or UNKNOWN_METHOD
    display_name: str = ""
    created: datetime | None = None

    @property
    def strong(self) -> bool:
        """Tell whether this method gets its owner through MFA (an unknown kind does, to be safe)."""
        return self.kind not in NOT_MFA_KINDS


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

    @property
    def loop_traces(self) -> bool:
        """Tell whether the person left traces of a half-done registration (Authenticator sign-ins or a device)."""
        return bool(self.authenticator_sign_ins or self.devices)


@dataclass(frozen=True)
class EvidenceSweep:
    """What Graph says about many people at once: each one's Evidence and what gathering it cost.

    `evidence` is keyed by the lower-cased UPN asked for; `requests` counts HTTP round trips to Graph (a
    $batch is one), `sign_in_pages` the tenant-wide sign-in pages read (the reports budget: 5 per 10 s).
    """

    evidence: Mapping[str, Evidence]
    requests: int = 0
    sign_in_pages: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class TemporaryAccessPass:
    """A TAP just created. `code` is shown once to its owner and never stored or logged."""

    id: str
    code: str = field(repr=False)
    lifetime_minutes: int = 60
    one_time: bool = True
    start: datetime | None = None
