"""Application registrations known to the simulated AD FS and Entra: client ids, secrets, redirect URIs, roles."""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from app.simulator.keys import _write_private

# First-party application ids, as Microsoft publishes them.
MY_SIGNINS_APP_ID = "19db86c3-b2b9-44cc-b339-36da233a3be2"
AUTHENTICATOR_APP_ID = "4813382a-8fa7-425e-ab75-3b753aab3abb"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_RESOURCE = "https://graph.microsoft.com"

PORTAL_CLIENT_ID = "6f1c3a52-2d8e-4b7a-9c1e-5a0d4e7b8c21"
GRAPH_CLIENT_ID = "0c9e6b74-1f3d-4a58-b2e6-7d4a9f1c3e85"
LIMITED_CLIENT_ID = "a7d2e9c1-3b4f-4e6a-8d5c-1f2e3a4b5c6d"

PORTAL_REDIRECT_PATHS = ("/auth/callback", "/auth/redirect", "/getAToken")
PORTAL_LOGOUT_PATHS = ("/", "/kiosk/signed-out/microsoft", "/kiosk/signed-out")
DEFAULT_REGISTRATIONS = (
    {"client_id": PORTAL_CLIENT_ID, "display_name": "ProofUp Portal",
     "redirect_uris": [f"{scheme}://{host}{path}" for scheme in ("http", "https")
                       for host in ("localhost", "127.0.0.1") for path in PORTAL_REDIRECT_PATHS],
     # AD FS's LogoutUri (Set-AdfsClient -LogoutUri): where end-session may send the browser back to.
     # The kiosk's sign-out goes through AD FS, then Microsoft's sign-out, and back to the attract screen.
     "logout_uris": [f"{scheme}://{host}{path}" for scheme in ("http", "https") for host in ("localhost", "127.0.0.1")
                     for path in PORTAL_LOGOUT_PATHS],
     "roles": []},
    {"client_id": GRAPH_CLIENT_ID, "display_name": "ProofUp Portal (Graph)", "redirect_uris": [],
     "roles": ["User.Read.All", "UserAuthenticationMethod.ReadWrite.All", "AuditLog.Read.All",
               "Directory.Read.All", "Policy.Read.AuthenticationMethod", "Domain.Read.All"]},
    {"client_id": LIMITED_CLIENT_ID, "display_name": "Least-privilege test app", "redirect_uris": [],
     "roles": ["User.Read.All"]},
)
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Client:
    """One application registration (the same id on AD FS and Entra, for simplicity)."""

    client_id: str
    display_name: str
    secret_sha256: str
    redirect_uris: tuple[str, ...]
    roles: tuple[str, ...]
    logout_uris: tuple[str, ...] = ()

    def secret_matches(self, secret: str) -> bool:
        return bool(secret) and hmac.compare_digest(_hash_secret(secret), self.secret_sha256)

    def redirect_uri_allowed(self, uri: str) -> bool:
        """Match exactly, except that a loopback redirect URI matches on any port (as Entra documents)."""
        return _registered(uri, self.redirect_uris)

    def logout_uri_allowed(self, uri: str) -> bool:
        """Tell whether end-session may return to this URI (a redirect URI or a registered logout URI)."""
        return _registered(uri, self.redirect_uris + self.logout_uris)


def _registered(uri: str, registered_uris: tuple[str, ...]) -> bool:
    if uri in registered_uris:
        return True
    wanted = urlsplit(uri)
    if wanted.hostname not in LOOPBACK_HOSTS:
        return False
    return any((r.scheme, r.hostname, r.path, r.query) == (wanted.scheme, wanted.hostname, wanted.path, wanted.query)
               for r in map(urlsplit, registered_uris))


class ClientRegistry:
    """Registrations loaded from DIR/clients.json (secrets only as hashes); made with defaults on first start.

    The plain secrets of the default registrations are handed over once, in DIR/client-secrets.json
    (mode 0600), the way the Entra portal shows a new secret once: tests and `proofup demo` read it.
    """

    def __init__(self, state_dir: Path, extra_redirect_uris: tuple[str, ...] = ()):
        path = state_dir / "clients.json"
        if not path.exists():
            self._create(state_dir)
        raw = json.loads(path.read_text(encoding="utf-8"))
        self._clients = {}
        for entry in raw["clients"]:
            uris = tuple(entry["redirect_uris"])
            if entry["client_id"] == PORTAL_CLIENT_ID:
                uris += tuple(extra_redirect_uris)
            self._clients[entry["client_id"].lower()] = Client(
                client_id=entry["client_id"], display_name=entry["display_name"],
                secret_sha256=entry["secret_sha256"], redirect_uris=uris, roles=tuple(entry["roles"]),
                logout_uris=tuple(entry.get("logout_uris", ())))
        # My Sign-Ins is Microsoft's own first-party app: no secret; it redeems its codes inside the simulator.
        self._clients[MY_SIGNINS_APP_ID] = Client(
            client_id=MY_SIGNINS_APP_ID, display_name="My Signins", secret_sha256="",
            redirect_uris=tuple(f"https://{host}/security-info/callback" for host in ("127.0.0.1", "localhost")),
            roles=())

    @staticmethod
    def _create(state_dir: Path) -> None:
        registrations, handover = [], {}
        for reg in DEFAULT_REGISTRATIONS:
            secret = secrets.token_urlsafe(30)
            handover[reg["client_id"]] = {"display_name": reg["display_name"], "client_secret": secret}
            registrations.append({**reg, "secret_sha256": _hash_secret(secret)})
        _write_private(state_dir / "client-secrets.json", json.dumps(handover, indent=2).encode())
        (state_dir / "clients.json").write_text(json.dumps({"clients": registrations}, indent=2), encoding="utf-8")

    def get(self, client_id: str) -> Client | None:
        return self._clients.get((client_id or "").strip().lower())

    def logout_target(self, uri: str, client_id: str = "") -> str:
        """Return uri if end-session may go back there (for client_id when given, else any client); else ''."""
        candidates = [self.get(client_id)] if client_id else list(self)
        return uri if uri and any(c is not None and c.logout_uri_allowed(uri) for c in candidates) else ""

    def __iter__(self):
        return iter(self._clients.values())


def read_client_secrets(state_dir: Path) -> dict[str, str]:
    """Return {client_id: secret} from the one-time handover file, for tests and the demo launcher."""
    raw = json.loads((Path(state_dir) / "client-secrets.json").read_text(encoding="utf-8"))
    return {client_id: entry["client_secret"] for client_id, entry in raw.items()}
