"""Entra ID (login.microsoftonline.com) under /{tenant}/: OpenID Connect v2.0, client credentials for app-only
Graph, and federation of the university's domain to the simulated AD FS (WS-Federation, Microsoft 365 RP).

Sources: learn.microsoft.com/entra/identity-platform/v2-protocols-oidc, v2-oauth2-auth-code-flow,
v2-oauth2-client-creds-grant-flow, access-token-claims-reference, id-token-claims-reference, reference-error-codes.
"""
from __future__ import annotations

import hashlib
import uuid
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request

from app.simulator import adfs, mysignins, oidc
from app.simulator.clients import GRAPH_APP_ID, GRAPH_RESOURCE
from app.simulator.context import sim
from app.simulator.errors import entra_error
from app.simulator.keys import TokenVerificationError
from app.simulator.oidc import OAuthProblem, RedirectableProblem, RefreshGrant, SsoSession
from app.simulator.world import EntraUser

COOKIE = "ESTSAUTH"
REFRESH_LIFETIME = 90 * 24 * 3600
GENERIC_TENANTS = ("common", "organizations")
GRAPH_RESOURCES = (GRAPH_RESOURCE, GRAPH_RESOURCE + "/", GRAPH_APP_ID)

TOKEN_ERRORS = {
    "missing_param": (400, "invalid_request", 900144, "The request body must contain the following parameter: "
                                                      "'{name}'."),
    "unknown_client": (400, "unauthorized_client", 700016, "Application with identifier '{client_id}' was not "
                       "found in the directory '{tenant}'. This can happen if the application has not been "
                       "installed by the administrator of the tenant or consented to by any user in the tenant. "
                       "You may have sent your authentication request to the wrong tenant."),
    "missing_secret": (401, "invalid_client", 7000218, "The request body must contain the following parameter: "
                                                       "'client_assertion' or 'client_secret'."),
    "bad_secret": (401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent "
                   "in the request is the client secret value, not the client secret ID, for a secret added to "
                   "app '{client_id}'."),
    "unsupported_grant": (400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type "
                                                                "'{grant_type}'."),
    "bad_code": (400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."),
    "code_reused": (400, "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed, please retry "
                    "with a new valid code or use an existing refresh token."),
    "code_expired": (400, "invalid_grant", 70008, "The provided authorization code or refresh token has expired "
                     "due to inactivity. Send a new interactive authorization request for this user and resource."),
    "redirect_mismatch_token": (400, "invalid_grant", 50011, "The redirect URI specified in the request does not "
                                "match the redirect URI used to obtain the authorization code."),
    "pkce_mismatch": (400, "invalid_grant", 501481, "The Code_Verifier does not match the code_challenge supplied "
                                                    "in the authorization request."),
    "bad_refresh": (400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."),
    "bad_scope": (400, "invalid_scope", 1002012, "The provided value for scope {scope} is not valid. Client "
                  "credential flows must have a scope value with /.default suffixed to the resource identifier "
                  "(application ID URI)."),
    "unknown_resource": (400, "invalid_resource", 500011, "The resource principal named {resource} was not found "
                         "in the tenant named {tenant}. This can happen if the application has not been installed "
                         "by the administrator of the tenant or consented to by any user in the tenant."),
    "bad_tenant": (400, "invalid_request", 90002, "Tenant '{tenant}' not found. Check to make sure you have the "
                   "correct tenant ID and are signing into the correct cloud."),
}
AUTHORIZE_ERRORS = {
    "missing_param": (900144, "The request body must contain the following parameter: '{name}'."),
    "unknown_client": TOKEN_ERRORS["unknown_client"][2:],
    "redirect_mismatch": (50011, "The redirect URI '{redirect_uri}' specified in the request does not match the "
                          "redirect URIs configured for the application '{client_id}'. Make sure the redirect URI "
                          "sent in the request matches one added to your application in the Azure portal."),
    "bad_tenant": TOKEN_ERRORS["bad_tenant"][2:],
    "no_account": (50034, "The user account {upn} does not exist in the {tenant} directory. To sign into this "
                   "application, the account must be added to the directory."),
    "disabled": (50057, "The user account is disabled."),
    "bad_federation": (50008, "SAML token is invalid."),
    "expired_flow": (50058, "A silent sign-in request was sent but no user is signed in."),
}

bp = Blueprint("entra", __name__)


def known_tenant(tenant: str) -> bool:
    seed = sim().seed
    return tenant.lower() in (seed.tenant_id.lower(), seed.tenant_domain.lower(), *GENERIC_TENANTS)


def tenant_id() -> str:
    return sim().seed.tenant_id


def v2_issuer() -> str:
    return f"{sim().base_url}/{tenant_id()}/v2.0"


def sts_issuer() -> str:
    # Access tokens for Graph are v1.0 tokens whatever endpoint issued them.
    return f"https://sts.windows.net/{tenant_id()}/"


def error_page(kind: str, status: int = 400, **details: str) -> Response:
    code, message = AUTHORIZE_ERRORS[kind]
    details.setdefault("tenant", tenant_id())
    return oidc.oauth_problem_page("entra_error.html", status, code=code, message=message.format(**details),
                                   correlation=str(uuid.uuid4()))


@bp.get("/<tenant>/v2.0/.well-known/openid-configuration")
def discovery(tenant: str):
    if not known_tenant(tenant):
        status, error, code, message = TOKEN_ERRORS["bad_tenant"]
        return entra_error(status, error, code, message.format(tenant=tenant))
    base, shown = sim().base_url, tenant_id() if tenant.lower() not in GENERIC_TENANTS else "{tenantid}"
    return jsonify({
        "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{shown}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
                             "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username",
                             "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": f"{base}/{tenant}/kerberos",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    })


@bp.get("/<tenant>/discovery/v2.0/keys")
@bp.get("/<tenant>/discovery/keys")
def keys(tenant: str):
    return jsonify(sim().keys.jwks())


@bp.route("/<tenant>/oauth2/v2.0/authorize", methods=["GET", "POST"])
def authorize(tenant: str):
    if not known_tenant(tenant):
        return error_page("bad_tenant", tenant=tenant)
    try:
        _, req = oidc.parse_auth_request("entra", request.values, tenant)
    except OAuthProblem as problem:
        return error_page(problem.kind, **problem.details)
    except RedirectableProblem as problem:
        return oidc.redirect_problem(problem)
    return sign_in_or_continue(req)


def sign_in_or_continue(req: oidc.AuthRequest) -> Response:
    """Reuse the Entra session; else ask for the username (or take login_hint) and federate to AD FS."""
    session = oidc.current_session(COOKIE)
    if session is not None and not req.force_login:
        user = sim().world.find_user(session.upn)
        if user is not None and user.account_enabled:
            return complete(req, user, session)
    handle = sim().pending.put(req, oidc.PENDING_LIFETIME)
    if req.login_hint or req.domain_hint.lower() == sim().seed.tenant_domain.lower():
        return federate(handle, req)
    return username_page(handle)


def username_page(handle: str, error: str = "") -> Response:
    return Response(render_template("entra_signin.html", ctx=handle, error=error),
                    headers={"Cache-Control": "no-store"})


def posted_flow() -> tuple[str, oidc.AuthRequest | None]:
    """Return the handle a sign-in form posted (ctx) and its sign-in in progress, None when that has expired."""
    handle = request.form.get("ctx", "")
    req = sim().pending.get(handle)
    return handle, req if isinstance(req, oidc.AuthRequest) else None


@bp.post("/common/login")
def username_entered():
    """Home realm discovery: the university's domain is federated, so the browser goes on to AD FS."""
    handle, req = posted_flow()
    if req is None:
        return error_page("expired_flow")
    req.login_hint = request.form.get("login", "").strip()
    if "@" not in req.login_hint:
        return username_page(handle, "Enter a valid email address, phone number, or Skype name.")
    return federate(handle, req)


def federate(handle: str, req: oidc.AuthRequest, *, password_instead: bool = False) -> Response:
    """Send the browser to AD FS, unless the user holds a usable Temporary Access Pass: Entra asks for it then."""
    simulator = sim()
    domain = req.login_hint.rsplit("@", 1)[-1].lower() if req.login_hint else req.domain_hint.lower()
    if domain != simulator.seed.tenant_domain.lower():
        return error_page("no_account", upn=req.login_hint)
    user = simulator.world.find_user(req.login_hint) if req.login_hint else None
    if user is not None and not password_instead and simulator.world.usable_tap(user.id) is not None:
        # "A user with a TAP completes the authentication in Microsoft Entra ID and isn't redirected to the
        # federated IdP" (learn.microsoft.com, howto-authentication-temporary-access-pass).
        return tap_page(handle, user.upn)
    query = {"wa": "wsignin1.0", "wtrealm": adfs.M365_REALM, "wctx": handle,
             "wreply": simulator.base_url + "/login.srf"}
    if req.login_hint:
        query["username"] = req.login_hint
    if req.force_login:
        query["wfresh"] = "0"  # Entra passes prompt=login on to the federated IdP this way
    return redirect(f"{simulator.base_url}/adfs/ls/?{urlencode(query)}")


def tap_page(handle: str, upn: str, error: str = "", status: int = 200) -> Response:
    return Response(render_template("entra_tap.html", ctx=handle, upn=upn, error=error), status=status,
                    headers={"Cache-Control": "no-store"})


@bp.post("/common/tap")
def tap_entered():
    """Check the Temporary Access Pass typed in (a form field: it never appears in a URL or the request log)."""
    simulator = sim()
    handle, req = posted_flow()
    if req is None:
        return error_page("expired_flow")
    user = simulator.world.find_user(req.login_hint)
    if user is None or not user.account_enabled:
        return error_page("no_account", upn=req.login_hint)
    if not simulator.world.sign_in_with_tap(user.id, request.form.get("tap", "").strip()):
        return tap_page(handle, user.upn, "Your Temporary Access Pass is incorrect or no longer valid. Try again, "
                                          "or ask your admin for a new one.", status=400)
    simulator.pending.pop(handle)
    session = SsoSession(user.upn, int(simulator.world.clock.time()), ("tap",))
    return oidc.start_session(complete(req, user, session), COOKIE, "/", session)


@bp.post("/common/federate")
def password_instead():
    """"Use your password instead": go on to the federated IdP after all."""
    handle, req = posted_flow()
    if req is None:
        return error_page("expired_flow")
    return federate(handle, req, password_instead=True)


@bp.post("/login.srf")
def federation_return():
    """Accept AD FS's WS-Fed answer, sign the user in to Entra and finish the pending authorization."""
    simulator = sim()
    try:
        claims = simulator.keys.verify(request.form.get("wresult", ""))
    except TokenVerificationError:
        return error_page("bad_federation")
    if (claims.get("aud") != adfs.M365_REALM or claims.get("iss") != adfs.access_token_issuer()
            or claims.get("exp", 0) <= simulator.world.clock.time()):
        return error_page("bad_federation")
    req = simulator.pending.pop(request.form.get("wctx", ""))
    if not isinstance(req, oidc.AuthRequest):
        return error_page("expired_flow")
    user = simulator.world.find_user(str(claims.get("upn", "")))
    if user is None:
        return error_page("no_account", upn=str(claims.get("upn", "")))
    if not user.account_enabled:
        return error_page("disabled")
    amr = tuple(claims.get("amr") or ())
    session = SsoSession(user.upn, int(claims.get("auth_time", simulator.world.clock.time())), amr)
    return oidc.start_session(complete(req, user, session), COOKIE, "/", session)


def complete(req: oidc.AuthRequest, user: EntraUser, session: SsoSession) -> Response:
    client = sim().clients.get(req.client_id)
    sim().world.record_sign_in(user.id, client.client_id, client.display_name)
    return oidc.issue_code(req, user.upn, session.auth_time, session.amr)


@bp.post("/<tenant>/oauth2/v2.0/token")
def token(tenant: str):
    try:
        if not known_tenant(tenant):
            raise OAuthProblem("bad_tenant", tenant=tenant)
        client = oidc.authenticate_client()
        grant_type = request.form.get("grant_type", "")
        if grant_type == "client_credentials":
            return app_token(client)
        if grant_type == "authorization_code":
            grant = oidc.redeem_code("entra", client)
            return mint(RefreshGrant("entra", client.client_id, grant.upn, grant.request.scope, "",
                                     grant.auth_time, grant.amr), nonce=grant.request.nonce)
        if grant_type == "refresh_token":
            return mint(oidc.refresh_grant("entra", client))
        if not grant_type:
            raise OAuthProblem("missing_param", name="grant_type")
        raise OAuthProblem("unsupported_grant", grant_type=grant_type)
    except OAuthProblem as problem:
        status, error, code, message = TOKEN_ERRORS[problem.kind]
        details = {"tenant": tenant, **problem.details}
        return entra_error(status, error, code, message.format(**details))


def app_token(client) -> Response:
    """Client credentials: an app-only v1.0 token for Graph carrying the granted application permissions."""
    scope = request.form.get("scope", "").strip()
    if not scope:
        raise OAuthProblem("missing_param", name="scope")
    if not scope.endswith("/.default") or " " in scope:
        raise OAuthProblem("bad_scope", scope=scope)
    resource = scope.removesuffix("/.default")
    if resource not in GRAPH_RESOURCES:
        raise OAuthProblem("unknown_resource", resource=resource)
    simulator = sim()
    claims = oidc.base_claims(sts_issuer(), GRAPH_RESOURCE, oidc.ACCESS_TOKEN_LIFETIME)
    service_principal = str(uuid.uuid5(uuid.NAMESPACE_URL, "sp:" + client.client_id))
    claims.update({"app_displayname": client.display_name, "appid": client.client_id, "appidacr": "1",
                   "idp": sts_issuer(), "idtyp": "app", "oid": service_principal, "sub": service_principal,
                   "tid": tenant_id(), "uti": oidc.b64url(uuid.uuid4().bytes), "ver": "1.0"})
    if client.roles:
        claims["roles"] = sorted(client.roles)
    return jsonify({"token_type": "Bearer", "expires_in": oidc.ACCESS_TOKEN_LIFETIME,
                    "ext_expires_in": oidc.ACCESS_TOKEN_LIFETIME, "access_token": simulator.keys.sign(claims)})


def mint(grant: RefreshGrant, nonce: str = "") -> Response:
    """Issue an id token (v2.0), a delegated Graph access token (v1.0) and a refresh token."""
    simulator = sim()
    user = simulator.world.find_user(grant.upn)
    if user is None or not user.account_enabled:
        raise OAuthProblem("bad_refresh")
    requested = grant.scope.split()
    id_token = oidc.base_claims(v2_issuer(), grant.client_id, oidc.ID_TOKEN_LIFETIME)
    id_token.update({"name": user.display_name, "oid": user.id, "preferred_username": user.upn,
                     "sub": oidc.b64url(hashlib.sha256(f"{grant.client_id}:{user.id}".encode()).digest()),
                     "tid": tenant_id(), "ver": "2.0", "uti": oidc.b64url(uuid.uuid4().bytes),
                     "auth_time": grant.auth_time})
    if nonce:
        id_token["nonce"] = nonce
    delegated = [s.rsplit("/", 1)[-1] for s in requested if s not in oidc.OIDC_SCOPES] or ["User.Read"]
    scp = " ".join(["openid", "profile", "email", *delegated])
    access = oidc.base_claims(sts_issuer(), GRAPH_APP_ID, oidc.ACCESS_TOKEN_LIFETIME)
    access.update({"appid": grant.client_id, "idtyp": "user", "oid": user.id, "sub": user.id, "scp": scp,
                   "tid": tenant_id(), "upn": user.upn, "name": user.display_name, "ver": "1.0",
                   "amr": ["mfa" if a == adfs.MFA_AMR else "pwd" for a in grant.amr] or ["pwd"]})
    body = {"token_type": "Bearer", "scope": scp, "expires_in": oidc.ACCESS_TOKEN_LIFETIME,
            "ext_expires_in": oidc.ACCESS_TOKEN_LIFETIME, "access_token": simulator.keys.sign(access),
            "id_token": simulator.keys.sign(id_token)}
    if "offline_access" in requested:
        body["refresh_token"] = oidc.new_refresh_token(grant, REFRESH_LIFETIME)
    if request.form.get("client_info") == "1":
        body["client_info"] = oidc.client_info(user.id, tenant_id())
    return jsonify(body)


@bp.get("/<tenant>/oauth2/v2.0/logout")
def logout(tenant: str):
    """Sign out of Entra and, for a federated user, of AD FS too; return to a registered URI if given."""
    if not known_tenant(tenant):
        abort(404)
    target = sim().clients.logout_target(request.args.get("post_logout_redirect_uri", ""),
                                         request.args.get("client_id", ""))
    response = redirect(target) if target else Response(render_template("signed_out.html", brand="entra"))
    oidc.end_session(response, adfs.COOKIE, adfs.COOKIE_PATH)
    # My Sign-Ins keeps no session of its own once Microsoft's sign-in session ends: its cookie goes too.
    response.delete_cookie(mysignins.COOKIE, path=mysignins.COOKIE_PATH, secure=True, httponly=True, samesite="Lax")
    return oidc.end_session(response, COOKIE, "/")
