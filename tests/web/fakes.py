"""Small stand-ins for the identity provider and Graph, built from the same seed as the directory."""
from __future__ import annotations

import base64
import secrets
import threading
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlparse

from app.domain.evidence import (AUTHENTICATOR_APP_ID, AuthMethod, Device, EntraUser, Evidence, EvidenceSweep, GraphError,
                                 SignIn)
from app.domain.identity import SignedInUser, SignInError
from app.domain.staff import ADFS_MFA
from app.seed import Seed

AUTHORIZE = "https://idp.test/adfs/oauth2/authorize"
LONG_AGO = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)


PASSWORD_AMR = "http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/password"


class FakeIdentity:
    """Hands out flows and accepts a code that names the user: enough to drive the portal's sign-in legs."""

    last_redirect_uri = ""
    last_force_login = False

    def begin_sign_in(self, redirect_uri, *, force_login=False, login_hint=None):
        self.last_redirect_uri, self.last_force_login = redirect_uri, force_login
        state = secrets.token_urlsafe(16)
        flow = {"state": state, "nonce": secrets.token_urlsafe(8), "code_verifier": "v" * 43,
                "redirect_uri": redirect_uri}
        return f"{AUTHORIZE}?state={state}", flow

    def complete_sign_in(self, flow, answer):
        if answer.state != flow.get("state"):
            raise SignInError("This sign-in answer does not belong to this browser session.", "state_mismatch")
        code = answer.code
        kind, _, encoded = code.partition(".")
        if kind not in ("ok", "mfa") or not encoded:
            raise SignInError("The sign-in could not be verified.", "invalid_token")
        upn = base64.urlsafe_b64decode(encoded).decode()
        # "mfa.<upn>": the authority vouches for a second factor, as AD FS does in amr after MFA.
        claims = {"amr": [ADFS_MFA]} if kind == "mfa" else {"amr": [PASSWORD_AMR]}
        return SignedInUser(upn=upn, display_name=upn.split("@")[0].title(), subject=upn, claims=claims)

    def logout_url(self, post_logout_redirect_uri):
        return "https://idp.test/adfs/oauth2/logout?post_logout_redirect_uri=" + post_logout_redirect_uri


def fake_code(upn: str, *, mfa: bool = False) -> str:
    """Return an authorization code FakeIdentity redeems for upn (URL-safe, as real codes are), with MFA or not."""
    return ("mfa." if mfa else "ok.") + base64.urlsafe_b64encode(upn.encode()).decode()


def state_of(auth_uri: str) -> str:
    return parse_qs(urlparse(auth_uri).query)["state"][0]


class FakeGraph:
    """Evidence and methods from the seed; methods can be registered and faults switched on."""

    def __init__(self, seed: Seed):
        self.lock = threading.Lock()
        self.users = {u.upn.lower(): u for u in seed.users if u.in_entra}
        self.methods: dict[str, list[AuthMethod]] = {
            u.object_id: [AuthMethod("28c10230-6103-485e-b985-444c60001490", "password")]
            + [AuthMethod(f"{u.object_id}-{k}", k, created=LONG_AGO) for k in u.methods]
            for u in self.users.values()
        }
        self.down = False
        self.throttled: GraphError | None = None  # raised by every call while set (Graph's 429)
        self.requests = 0

    def register(self, upn: str, kind: str = "microsoftAuthenticator") -> None:
        user = self.users[upn.lower()]
        with self.lock:
            self.methods[user.object_id].append(AuthMethod(f"new-{kind}", kind, created=datetime.now(timezone.utc)))

    def _count(self) -> None:
        with self.lock:
            self.requests += 1
        if self.down:
            raise GraphError("Graph did not answer", 0)
        if self.throttled is not None:
            raise self.throttled

    def sweep_evidence(self, upns, *, since=None, progress=None) -> EvidenceSweep:
        """Gather many students' evidence: one request per 20, as the real $batch sweep counts them."""
        evidence = {}
        for done, upn in enumerate(upns, start=1):
            evidence[upn.lower()] = self.gather_evidence(upn)
            if progress is not None:
                progress(done, len(upns))
        return EvidenceSweep(evidence, requests=-(-len(upns) // 20))

    def gather_evidence(self, upn: str) -> Evidence:
        try:
            self._count()
        except GraphError as down:
            return Evidence(user=None, errors={"user": down, "methods": down})
        user = self.users.get(upn.lower())
        if user is None:
            return Evidence(user=None, errors={"user": GraphError("not found", 404, "Request_ResourceNotFound")})
        half = user.state == "half_registered"
        return Evidence(
            user=EntraUser(user.object_id, user.upn, user.display_name, user.enabled),
            methods=tuple(self.methods[user.object_id]),
            authenticator_sign_ins=(SignIn("s1", LONG_AGO, AUTHENTICATOR_APP_ID, "Microsoft Authenticator", 0),)
            if half else (),
            devices=(Device("d1", "Pixel 7", "Android"),) if half else (),
        )

    def methods_for(self, user_ids):
        self._count()
        return {i: tuple(self.methods.get(i, ())) for i in user_ids}

    def create_temporary_access_pass(self, user_id, lifetime_minutes=60, one_time=True):
        raise NotImplementedError


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
