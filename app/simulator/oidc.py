"""OpenID Connect as AD FS 2019 and Entra ID speak it: authorize requests, codes, tokens, refresh, PKCE.

What differs between the two issuers (URLs, claims, error wording) lives in a Flavor; the protocol is one.
Sources: learn.microsoft.com/windows-server/identity/ad-fs/development/ad-fs-openid-connect-oauth-concepts,
.../ad-fs-openid-connect-oauth-flows-scenarios; learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow,
.../v2-oauth2-client-creds-grant-flow, .../id-token-claims-reference, .../reference-error-codes.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode

from flask import Response, redirect, render_template, request

from app.simulator.clients import Client
from app.simulator.context import sim

CODE_LIFETIME = 600
ACCESS_TOKEN_LIFETIME = 3600
ID_TOKEN_LIFETIME = 3600
SSO_LIFETIME = 8 * 3600  # AD FS SsoLifetime on an unregistered device (480 minutes by default)
KMSI_LIFETIME = 24 * 3600  # AD FS "keep me signed in" (KmsiLifetimeMins, 1440 by default): a persistent cookie
PENDING_LIFETIME = 1800
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})


class OAuthProblem(Exception):
    """A request the issuer refuses; `kind` names the problem, the Flavor words it."""

    def __init__(self, kind: str, **details: str):
        super().__init__(kind)
        self.kind = kind
        self.details = details


@dataclass
class AuthRequest:
    """An authorization request between /authorize and the code."""

    flavor: str  # "adfs" or "entra"
    client_id: str
    redirect_uri: str
    response_mode: str
    state: str
    nonce: str
    scope: str
    code_challenge: str
    code_challenge_method: str
    force_login: bool
    login_hint: str = ""
    domain_hint: str = ""
    resource: str = ""
    tenant: str = ""


@dataclass
class CodeGrant:
    request: AuthRequest
    upn: str
    auth_time: int
    amr: tuple[str, ...]
    expires_at: float
    redeemed: bool = False


@dataclass
class RefreshGrant:
    flavor: str
    client_id: str
    upn: str
    scope: str
    resource: str
    auth_time: int
    amr: tuple[str, ...] = field(default_factory=tuple)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    """Check a PKCE verifier against its challenge (RFC 7636: S256 or plain)."""
    if method == "S256":
        computed = b64url(hashlib.sha256(verifier.encode()).digest())
    else:
        computed = verifier
    return hmac.compare_digest(computed.encode(), challenge.encode())


def parse_auth_request(flavor: str, params, tenant: str = "") -> tuple[Client, AuthRequest]:
    """Validate an authorization request in the order the issuers do; raise OAuthProblem.

    Problems with the client or redirect URI are shown on the issuer's own page (never redirected);
    later problems go back to the redirect URI as error=...&state=....
    """
    client_id = params.get("client_id", "")
    if not client_id:
        raise OAuthProblem("missing_param", name="client_id")
    client = sim().clients.get(client_id)
    if client is None:
        raise OAuthProblem("unknown_client", client_id=client_id, tenant=tenant)
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri or not client.redirect_uri_allowed(redirect_uri):
        raise OAuthProblem("redirect_mismatch", client_id=client_id, redirect_uri=redirect_uri)
    req = AuthRequest(
        flavor=flavor, client_id=client.client_id, redirect_uri=redirect_uri,
        response_mode=params.get("response_mode", "query") or "query", state=params.get("state", ""),
        nonce=params.get("nonce", ""), scope=params.get("scope", "openid"),
        code_challenge=params.get("code_challenge", ""),
        code_challenge_method=params.get("code_challenge_method", "plain" if params.get("code_challenge") else ""),
        force_login=params.get("prompt", "") == "login", login_hint=params.get("login_hint", ""),
        domain_hint=params.get("domain_hint", ""),
        resource=params.get("resource", ""), tenant=tenant,
    )
    if params.get("response_type", "") != "code":
        raise RedirectableProblem(req, "unsupported_response_type",
                                  "The response_type must be 'code' (authorization code flow).")
    if req.response_mode not in ("query", "form_post"):
        raise RedirectableProblem(req, "invalid_request", f"response_mode '{req.response_mode}' is not supported here.")
    if req.code_challenge and req.code_challenge_method not in ("S256", "plain"):
        raise RedirectableProblem(req, "invalid_request", "code_challenge_method must be S256 or plain.")
    if flavor == "entra" and "openid" not in req.scope.split():
        raise RedirectableProblem(req, "invalid_request", "The scope must include 'openid' for OpenID Connect.")
    return client, req


class RedirectableProblem(Exception):
    """An authorization error sent back to the (already validated) redirect URI."""

    def __init__(self, req: AuthRequest, error: str, description: str):
        super().__init__(error)
        self.req, self.error, self.description = req, error, description


def deliver(req: AuthRequest, values: dict[str, str]) -> Response:
    """Send the result to the client: a 302 with a query, or an auto-submitted form (form_post)."""
    if req.state:
        values = {**values, "state": req.state}
    if req.response_mode == "form_post":
        return Response(render_template("form_post.html", action=req.redirect_uri, values=values),
                        headers={"Cache-Control": "no-store"})
    separator = "&" if "?" in req.redirect_uri else "?"
    return redirect(req.redirect_uri + separator + urlencode(values), code=302)


def issue_code(req: AuthRequest, upn: str, auth_time: int, amr: tuple[str, ...]) -> Response:
    """Mint a single-use authorization code for a signed-in user and deliver it."""
    simulator = sim()
    code = secrets.token_urlsafe(32)
    with simulator.world.lock:
        now = simulator.world.clock.time()
        for stale in [c for c, g in simulator.codes.items() if g.expires_at < now - 3600]:
            del simulator.codes[stale]  # forget codes long expired; recent ones are kept to recognise reuse
        simulator.codes[code] = CodeGrant(req, upn, auth_time, amr, now + CODE_LIFETIME)
    return deliver(req, {"code": code})


def client_credentials_from_request() -> tuple[str, str]:
    """Read client_id/client_secret from HTTP Basic (client_secret_basic) or the form (client_secret_post)."""
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        return auth.username or "", auth.password or ""
    return request.form.get("client_id", ""), request.form.get("client_secret", "")


def authenticate_client() -> Client:
    """Find the client and check its secret; raise OAuthProblem as the token endpoint words it."""
    client_id, secret = client_credentials_from_request()
    if not client_id:
        raise OAuthProblem("missing_param", name="client_id")
    client = sim().clients.get(client_id)
    if client is None:
        raise OAuthProblem("unknown_client", client_id=client_id)
    if not secret:
        raise OAuthProblem("missing_secret", client_id=client_id)
    if not client.secret_matches(secret):
        raise OAuthProblem("bad_secret", client_id=client_id)
    return client


def redeem_code(flavor: str, client: Client) -> CodeGrant:
    """Redeem an authorization code once, checking client, redirect URI, expiry and PKCE."""
    code = request.form.get("code", "")
    if not code:
        raise OAuthProblem("missing_param", name="code")
    simulator = sim()
    with simulator.world.lock:
        grant = simulator.codes.get(code)
        if grant is None or grant.request.flavor != flavor:
            raise OAuthProblem("bad_code")
        if grant.redeemed:
            raise OAuthProblem("code_reused")
        if grant.expires_at <= simulator.world.clock.time():
            raise OAuthProblem("code_expired")
        if grant.request.client_id != client.client_id:
            raise OAuthProblem("bad_code")
        if request.form.get("redirect_uri", "") != grant.request.redirect_uri:
            raise OAuthProblem("redirect_mismatch_token", client_id=client.client_id)
        if grant.request.code_challenge:
            verifier = request.form.get("code_verifier", "")
            if not verifier or not pkce_matches(verifier, grant.request.code_challenge,
                                                grant.request.code_challenge_method):
                raise OAuthProblem("pkce_mismatch")
        grant.redeemed = True
    return grant


def refresh_grant(flavor: str, client: Client) -> RefreshGrant:
    token = request.form.get("refresh_token", "")
    if not token:
        raise OAuthProblem("missing_param", name="refresh_token")
    grant = sim().refresh_tokens.get(token)
    if not isinstance(grant, RefreshGrant) or grant.flavor != flavor or grant.client_id != client.client_id:
        raise OAuthProblem("bad_refresh")
    return grant


def new_refresh_token(grant: RefreshGrant, lifetime: float) -> str:
    return sim().refresh_tokens.put(grant, lifetime)


def base_claims(issuer: str, audience: str, lifetime: int) -> dict:
    now = int(sim().world.clock.time())
    return {"aud": audience, "iss": issuer, "iat": now, "nbf": now, "exp": now + lifetime}


def oauth_problem_page(template: str, status: int, **context) -> Response:
    return Response(render_template(template, **context), status=status, headers={"Cache-Control": "no-store"})


def redirect_problem(problem: RedirectableProblem) -> Response:
    return deliver(problem.req, {"error": problem.error, "error_description": problem.description})


def client_info(oid: str, tid: str) -> str:
    """Build MSAL's client_info: base64url JSON of the user's object id and tenant id."""
    return b64url(json.dumps({"uid": oid, "utid": tid}).encode())


@dataclass(frozen=True)
class SsoSession:
    """A signed-in browser at one issuer (the MSISAuth or ESTSAUTH cookie points at it)."""

    upn: str
    auth_time: int
    amr: tuple[str, ...] = ("pwd",)


def current_session(cookie: str) -> SsoSession | None:
    found = sim().sessions.get(request.cookies.get(cookie))
    return found if isinstance(found, SsoSession) else None


def start_session(response: Response, cookie: str, path: str, session: SsoSession, *,
                  keep_signed_in: bool = False) -> Response:
    """Remember the sign-in in a cookie (a random handle; the session itself stays on the server).

    Without "keep me signed in" the cookie lives until the browser closes (a kiosk browser never closes)
    and the session 8 hours; with it, the cookie is persistent and both live 24 hours.
    """
    lifetime = KMSI_LIFETIME if keep_signed_in else SSO_LIFETIME
    handle = sim().sessions.put(session, lifetime)
    response.set_cookie(cookie, handle, path=path, secure=True, httponly=True, samesite="Lax",
                        max_age=lifetime if keep_signed_in else None)
    return response


def end_session(response: Response, cookie: str, path: str) -> Response:
    sim().sessions.pop(request.cookies.get(cookie))
    response.delete_cookie(cookie, path=path, secure=True, httponly=True, samesite="Lax")
    return response
