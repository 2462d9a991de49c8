"""The simulator's shared parts, reachable from every blueprint through `sim()`."""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from flask import current_app, request

from app.domain.ports import Directory
from app.seed import Seed
from app.simulator.clients import ClientRegistry
from app.simulator.control import FaultBook, RequestLog
from app.simulator.keys import SigningKey, _write_private
from app.simulator.throttle import Throttle
from app.simulator.world import Ephemeral, World


class PasswordDirectory(Directory, Protocol):
    """The portal's directory port plus the one thing only the simulator's AD FS needs: checking a password."""

    def verify_password(self, upn: str, password: str) -> bool:
        """Tell whether the password is right for an enabled user (a bind as that user)."""


@dataclass
class Simulator:
    """One simulated cloud: state, keys, registrations, the directory AD FS reads, throttling and faults."""

    state_dir: Path
    seed: Seed
    world: World
    directory: PasswordDirectory
    keys: SigningKey
    clients: ClientRegistry
    control_token: str = field(repr=False)
    required_group_dn: str = ""
    bypass_group_dn: str = ""
    portal_url: str = ""  # the ProofUp Portal the AD FS "register" notice links to (the web-theme change)
    throttle: Throttle = field(default_factory=Throttle)
    faults: FaultBook = field(default_factory=FaultBook)
    log: RequestLog = field(default_factory=RequestLog)
    pending: Ephemeral = None  # sign-ins in progress (OIDC requests, WS-Fed requests)
    sessions: Ephemeral = None  # SSO sessions of AD FS, Entra and My Sign-Ins
    codes: dict = field(default_factory=dict)  # authorization code -> CodeGrant (kept to tell reuse from nonsense)
    refresh_tokens: Ephemeral = None

    def __post_init__(self) -> None:
        clock = self.world.clock
        self.pending = Ephemeral(clock)
        self.sessions = Ephemeral(clock)
        self.refresh_tokens = Ephemeral(clock)
        self.required_group_dn = self.required_group_dn or self.seed.required_group_dn
        self.bypass_group_dn = self.bypass_group_dn or self.seed.bypass_group_dn

    @property
    def base_url(self) -> str:
        """The URL this request reached us on (https://127.0.0.1:PORT), as issuers and links use it."""
        return request.host_url.rstrip("/")


def ensure_control_token(state_dir: Path) -> str:
    """Read DIR/control-token, making it on first start (it guards the control endpoint)."""
    path = state_dir / "control-token"
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(32).encode())
    return path.read_text(encoding="utf-8").strip()


def sim() -> Simulator:
    """Return the simulator behind the current request."""
    return current_app.extensions["simulator"]
