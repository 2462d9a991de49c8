"""AD FS 2019 under /adfs: OpenID Connect for the portal's application group, and WS-Federation sign-in for
the Microsoft 365 relying party, whose access control policy reads group membership from the directory.

Sources: learn.microsoft.com/windows-server/identity/ad-fs/development/ad-fs-openid-connect-oauth-concepts;
.../ad-fs/operations/configure-ad-fs-and-azure-mfa (the Azure MFA adapter, and the onload.js snippet that sends
users without a method to aka.ms/mfasetup after 5 seconds); .../ad-fs/operations/access-control-policies-in-ad-fs.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, redirect, render_template, request

from app.domain.directory import DirectoryUser
from app.simulator import oidc
from app.simulator.context import sim
from app.simulator.errors import adfs_error
from app.simulator.oidc import OAuthProblem, RedirectableProblem, RefreshGrant, SsoSession

COOKIE = "MSISAuth"
COOKIE_PATH = "/adfs"
M365_REALM = "urn:federation:MicrosoftOnline"
REFRESH_LIFETIME = 8 * 3600
BAD_CREDENTIALS = "Incorrect user ID or password. Type the correct user ID and password, and try again."
PASSWORD_AMR = "http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/password"
MFA_AMR = "http://schemas.microsoft.com/claims/multipleauthn"

# Token endpoint errors: (status, error, description). AD FS words most code problems the same way.
TOKEN_ERRORS = {
    "missing_param": (400, "invalid_request", "MSIS9609: The '{name}' parameter is missing in the request."),
    "unknown_client": (400, "invalid_client", "MSIS9607: The 'client_id' parameter in the request is invalid. "
                                              "No registered client is found with this identifier."),
    "missing_secret": (401, "invalid_client", "MSIS9622: Client authentication failed. Please verify the "
                                              "credential provided for client authentication is valid."),
    "bad_code": (400, "invalid_grant", "MSIS9612: The authorization code received in 'code' parameter is invalid."),
    "redirect_mismatch_token": (400, "invalid_grant", "MSIS9613: The redirect URI received in 'redirect_uri' "
                                                      "parameter does not match the one in the authorization request."),
    "pkce_mismatch": (400, "invalid_grant", "MSIS9626: Received invalid code_verifier. The code_verifier does not "
                                            "match the code_challenge of the authorization request."),
    "bad_refresh": (400, "invalid_grant", "MSIS9615: The refresh token received in 'refresh_token' parameter is "
                                          "invalid."),
    "unsupported_grant": (400, "unsupported_grant_type", "MSIS9611: The authorization server does not support the "
                                                         "requested 'grant_type'."),
}
TOKEN_ERRORS["bad_secret"] = TOKEN_ERRORS["missing_secret"]
TOKEN_ERRORS["code_reused"] = TOKEN_ERRORS["code_expired"] = TOKEN_ERRORS["bad_code"]
AUTHORIZE_ERRORS = {
    "missing_param": "MSIS9209: Received invalid OAuth authorization request. The '{name}' parameter is missing.",
    "unknown_client": "MSIS9224: Received invalid OAuth authorization request. The received 'client_id' is "
                      "invalid as no registered client was found with identifier '{client_id}'.",
    "redirect_mismatch": "MSIS9224: Received invalid OAuth authorization request. The received 'redirect_uri' "
                         "parameter is not a valid registered redirect URI for the client identifier: "
                         "'{client_id}'. Received redirect_uri: '{redirect_uri}'.",
}

bp = Blueprint("adfs", __name__, url_prefix="/adfs")


@dataclass
class WsFedRequest:
    """A WS-Federation sign-in for the Microsoft 365 relying party (Entra sends federated users here)."""

    realm: str
    wctx: str
    reply: str
    force_login: bool
    username: str = ""


def issuer() -> str:
    return sim().base_url + "/adfs"


def access_token_issuer() -> str:
    # AD FS signs access tokens as its federation service identifier, http:// and /services/trust included.
    return "http://" + request.host + "/adfs/services/trust"


@bp.get("/.well-known/openid-configuration")
def discovery():
    base = issuer()
    return jsonify({
        "issuer": base, "authorization_endpoint": base + "/oauth2/authorize/",
        "token_endpoint": base + "/oauth2/token/", "jwks_uri": base + "/discovery/keys",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt",
                                                  "windows_client_authentication"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token", "code token",
                                     "code id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials",
                                  "urn:ietf:params:oauth:grant-type:jwt-bearer", "implicit", "password",
                                  "srv_challenge", "urn:ietf:params:oauth:grant-type:device_code", "device_code"],
        "subject_types_supported": ["pairwise"],
        "scopes_supported": ["aza", "vpn_cert", "email", "openid", "profile", "allatclaims", "logon_cert",
                             "user_impersonation", "winhello_cert"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        "access_token_issuer": access_token_issuer(),
        "claims_supported": ["aud", "iss", "iat", "exp", "auth_time", "nonce", "at_hash", "c_hash", "sub", "upn",
                             "unique_name", "pwd_url", "pwd_exp", "mfa_auth_time", "sid", "nbf"],
        "microsoft_multi_refresh_token": True,
        "userinfo_endpoint": base + "/userinfo",
        "capabilities": [],
        "end_session_endpoint": base + "/oauth2/logout",
        "as_access_token_token_binding_supported": True,
        "as_refresh_token_token_binding_supported": True,
        "resource_access_token_token_binding_supported": True,
        "op_id_token_token_binding_supported": True,
        "rp_id_token_token_binding_supported": True,
        "frontchannel_logout_supported": True,
        "frontchannel_logout_session_supported": True,
        "device_authorization_endpoint": base + "/oauth2/devicecode",
        "code_challenge_methods_supported": ["plain", "S256"],
    })


@bp.get("/discovery/keys")
def keys():
    return jsonify(sim().keys.jwks())


def error_page(message: str, status: int = 400) -> Response:
    return oidc.oauth_problem_page("adfs_error.html", status, message=message)


@bp.route("/oauth2/authorize", methods=["GET", "POST"], strict_slashes=False)
def authorize():
    try:
        _, req = oidc.parse_auth_request("adfs", request.values)
    except OAuthProblem as problem:
        return error_page(AUTHORIZE_ERRORS[problem.kind].format(**problem.details))
    except RedirectableProblem as problem:
        return oidc.redirect_problem(problem)
    return sign_in_or_continue(req, req.force_login)


@bp.route("/ls/", methods=["GET"], strict_slashes=False)
def wsfed_signin():
    """WS-Federation sign-in (wa=wsignin1.0) for the Microsoft 365 relying party."""
    if request.args.get("wa") != "wsignin1.0" or request.args.get("wtrealm") != M365_REALM:
        return error_page("MSIS7042: The same client browser session has made an invalid request, or the "
                          "relying party trust identifier is not known.")
    # The token goes to the relying party's registered endpoint, never to a wreply from the query.
    pending = WsFedRequest(realm=M365_REALM, wctx=request.args.get("wctx", ""),
                           reply=sim().base_url + "/login.srf", force_login=request.args.get("wfresh") == "0",
                           username=request.args.get("username", ""))
    return sign_in_or_continue(pending, pending.force_login)


def sign_in_or_continue(pending, force_login: bool) -> Response:
    """Reuse the AD FS SSO session unless the request forces a fresh sign-in; else show the form."""
    session = oidc.current_session(COOKIE)
    if session is not None and not force_login:
        return continue_signed_in(pending, session)
    handle = sim().pending.put(pending, oidc.PENDING_LIFETIME)
    hint = getattr(pending, "login_hint", "") or getattr(pending, "username", "")
    return signin_form(handle, hint)


def signin_form(handle: str, username: str, error: str = "", status: int = 200) -> Response:
    return Response(render_template("adfs_signin.html", ctx=handle, username=username, error=error),
                    status=status, headers={"Cache-Control": "no-store"})


@bp.post("/ls/")
def password_signin():
    """Check the password against the directory (a bind as the user, in LDAP) and carry on."""
    simulator, handle = sim(), request.form.get("ctx", "")
    pending = simulator.pending.get(handle)
    if pending is None:
        return error_page("MSIS7001: The passive protocol context was not found or not valid. "
                          "If the context was stored in cookies, the cookies that were presented by the "
                          "client were not valid.")
    upn, password = request.form.get("UserName", "").strip(), request.form.get("Password", "")
    user = simulator.directory.find_user(upn) if upn else None
    if user is not None and not user.enabled:
        return error_page("Your account has been disabled. Contact your administrator for more information.", 200)
    if user is None or not simulator.directory.verify_password(upn, password):
        return signin_form(handle, upn, BAD_CREDENTIALS)
    simulator.pending.pop(handle)
    session = SsoSession(upn=user.upn, auth_time=int(simulator.world.clock.time()), amr=(PASSWORD_AMR,))
    # The farm has "keep me signed in" on (Set-AdfsProperties -EnableKmsi $true): the form's Kmsi box.
    keep = request.form.get("Kmsi", "") == "true"
    return oidc.start_session(continue_signed_in(pending, session), COOKIE, COOKIE_PATH, session, keep_signed_in=keep)


def continue_signed_in(pending, session: SsoSession) -> Response:
    if isinstance(pending, oidc.AuthRequest):
        if staff_code(session.upn) and MFA_AMR not in session.amr:
            return staff_code_form(sim().pending.put(pending, oidc.PENDING_LIFETIME), session.upn)
        return oidc.issue_code(pending, session.upn, session.auth_time, session.amr)
    return evaluate_m365_policy(pending, session)


def staff_code(upn: str) -> str:
    """Return a staff account's one-time code ('' for everyone else).

    The portal's application group has an access control policy that requires MFA for the service desk
    (docs/helpdesk.md); the demo's second factor is a fixed one-time code from the seed, printed in its banner.
    """
    try:
        return sim().seed.user(upn).staff_mfa
    except KeyError:
        return ""


def staff_code_form(handle: str, upn: str, error: str = "", status: int = 200) -> Response:
    return Response(render_template("adfs_code.html", ctx=handle, upn=upn, error=error), status=status,
                    headers={"Cache-Control": "no-store"})


@bp.post("/ls/code")
def staff_code_entered():
    """Check the staff account's one-time code; on success the session (and the id_token) carries MFA in amr."""
    simulator, handle = sim(), request.form.get("ctx", "")
    pending, session = simulator.pending.get(handle), oidc.current_session(COOKIE)
    if not isinstance(pending, oidc.AuthRequest) or session is None:
        return error_page("MSIS7001: The passive protocol context was not found or not valid.")
    expected = staff_code(session.upn)
    if not expected or not hmac.compare_digest(request.form.get("code", "").strip(), expected):
        return staff_code_form(handle, session.upn, "The code is wrong. Try again.")
    simulator.pending.pop(handle)
    stronger = SsoSession(session.upn, session.auth_time, session.amr + (MFA_AMR,))
    response = oidc.issue_code(pending, stronger.upn, stronger.auth_time, stronger.amr)
    return oidc.start_session(response, COOKIE, COOKIE_PATH, stronger)


def evaluate_m365_policy(pending: WsFedRequest, session: SsoSession) -> Response:
    """Apply the Microsoft 365 relying party's access control policy, reading groups from the directory.

    Policy (as DOMAIN.md describes the university's): permit everyone; require MFA for members of the
    MFA-required group (nested membership counts) except members of the bypass group. The Azure MFA
    adapter can only challenge users with a usable method in Entra; otherwise AD FS shows its
    "method not available" error, which the onload.js customisation turns into the 5-second redirect.
    """
    simulator = sim()
    user = simulator.directory.find_user(session.upn)
    if user is None or not user.enabled:
        return error_page("An error occurred. Contact your administrator for more information.")
    if needs_mfa(user) and MFA_AMR not in session.amr:
        entra_user = simulator.world.find_user(user.upn)
        if entra_user is not None and simulator.world.has_usable_strong_method(entra_user.id):
            handle = simulator.pending.put(pending, oidc.PENDING_LIFETIME)
            return Response(render_template("adfs_mfa.html", ctx=handle, upn=user.upn),
                            headers={"Cache-Control": "no-store"})
        return Response(render_template(
            "adfs_notice.html", upn=user.upn, seconds=simulator.world.tunables.notice_seconds,
            setup_url=simulator.base_url + "/security-info?" + urlencode({"whr": simulator.seed.tenant_domain})),
            headers={"Cache-Control": "no-store"})
    return post_to_entra(pending, user, session)


def needs_mfa(user: DirectoryUser) -> bool:
    simulator = sim()
    return user.in_group(simulator.required_group_dn) and not user.in_group(simulator.bypass_group_dn)


@bp.post("/ls/mfa")
def mfa_approved():
    """The stand-in for approving the Authenticator notification the Azure MFA adapter sends."""
    simulator = sim()
    pending, session = simulator.pending.pop(request.form.get("ctx", "")), oidc.current_session(COOKIE)
    if not isinstance(pending, WsFedRequest) or session is None:
        return error_page("MSIS7001: The passive protocol context was not found or not valid.")
    entra_user = simulator.world.find_user(session.upn)
    if entra_user is None or not simulator.world.has_usable_strong_method(entra_user.id):
        return error_page(f"The selected authentication method is not available for '{session.upn}'.")
    stronger = SsoSession(session.upn, session.auth_time, session.amr + (MFA_AMR,))
    user = simulator.directory.find_user(session.upn)
    response = oidc.start_session(post_to_entra(pending, user, stronger), COOKIE, COOKIE_PATH, stronger)
    return response


def post_to_entra(pending: WsFedRequest, user: DirectoryUser, session: SsoSession) -> Response:
    """Send the sign-in back to Entra as WS-Fed does: an auto-posted form with wresult and wctx.

    The token is a signed JWT standing in for the SAML 1.1 assertion AD FS really issues.
    """
    claims = oidc.base_claims(access_token_issuer(), M365_REALM, 3600)
    claims.update({"upn": user.upn, "immutableid": immutable_id(user), "amr": list(session.amr),
                   "auth_time": session.auth_time})
    values = {"wa": "wsignin1.0", "wresult": sim().keys.sign(claims), "wctx": pending.wctx}
    return Response(render_template("form_post.html", action=pending.reply, values=values),
                    headers={"Cache-Control": "no-store"})


def immutable_id(user: DirectoryUser) -> str:
    return hashlib.sha256(user.dn.lower().encode()).hexdigest()[:24]


def user_sid(user: DirectoryUser) -> str:
    """Make a stable, SID-shaped value (the embedded directory has no objectSid)."""
    digest = hashlib.sha256(user.dn.lower().encode()).digest()
    parts = [int.from_bytes(digest[i:i + 4], "big") for i in (0, 4, 8)]
    rid = 1000 + int.from_bytes(digest[12:14], "big")
    return "S-1-5-21-{}-{}-{}-{}".format(*parts, rid)


@bp.post("/oauth2/token", strict_slashes=False)
def token():
    try:
        client = oidc.authenticate_client()
        grant_type = request.form.get("grant_type", "")
        if grant_type == "authorization_code":
            grant = oidc.redeem_code("adfs", client)
            req = grant.request
            return mint(RefreshGrant("adfs", client.client_id, grant.upn, req.scope, req.resource,
                                     grant.auth_time, grant.amr), nonce=req.nonce)
        if grant_type == "refresh_token":
            return mint(oidc.refresh_grant("adfs", client))
        if not grant_type:
            raise OAuthProblem("missing_param", name="grant_type")
        raise OAuthProblem("unsupported_grant")
    except OAuthProblem as problem:
        status, error, description = TOKEN_ERRORS[problem.kind]
        return adfs_error(status, error, description.format(**problem.details))


def mint(grant: RefreshGrant, nonce: str = "") -> Response:
    """Issue id, access and refresh tokens with the claims AD FS 2019 emits."""
    simulator = sim()
    user = simulator.directory.find_user(grant.upn)
    if user is None or not user.enabled:
        raise OAuthProblem("bad_refresh")
    resource = grant.resource or f"microsoft:identityserver:{grant.client_id}"
    identity = {"upn": user.upn, "unique_name": f"{simulator.seed.base_dn.split(',')[0][3:].upper()}\\"
                                                f"{user.sam_account_name}", "sid": user_sid(user)}
    id_token = oidc.base_claims(issuer(), grant.client_id, oidc.ID_TOKEN_LIFETIME)
    id_token.update(identity)
    id_token.update({"auth_time": grant.auth_time, "sub": pairwise_sub(grant.client_id, user),
                     "apptype": "Confidential", "appid": grant.client_id,
                     "authmethod": grant.amr[-1] if grant.amr else PASSWORD_AMR, "ver": "1.0", "scp": "openid",
                     "amr": list(grant.amr or (PASSWORD_AMR,))})  # multipleauthn after MFA (DOMAIN.md 7)
    if nonce:
        id_token["nonce"] = nonce
    access = oidc.base_claims(access_token_issuer(), resource, oidc.ACCESS_TOKEN_LIFETIME)
    access.update(identity)
    access.update({"auth_time": grant.auth_time, "appid": grant.client_id, "apptype": "Confidential",
                   "authmethod": id_token["authmethod"], "ver": "1.0", "scp": "openid"})
    return jsonify({
        "access_token": simulator.keys.sign(access), "token_type": "bearer",
        "expires_in": oidc.ACCESS_TOKEN_LIFETIME, "resource": resource,
        "refresh_token": oidc.new_refresh_token(grant, REFRESH_LIFETIME),
        "refresh_token_expires_in": REFRESH_LIFETIME, "scope": "openid",
        "id_token": simulator.keys.sign(id_token),
    })


def pairwise_sub(client_id: str, user: DirectoryUser) -> str:
    return oidc.b64url(hashlib.sha256(f"{client_id}:{user_sid(user)}".encode()).digest())


@bp.get("/oauth2/logout", strict_slashes=False)
def logout():
    """End the AD FS session; go back to post_logout_redirect_uri only when it is registered (LogoutUri).

    Only AD FS's own session (MSISAuth) ends: Entra's session and My Sign-Ins' stay, as on a real farm
    (ad-fs-logout-openid-connect.md); id_token_hint is optional and not needed to find the session.
    """
    target = sim().clients.logout_target(request.args.get("post_logout_redirect_uri", ""),
                                         request.args.get("client_id", ""))
    response = redirect(target) if target else Response(render_template("signed_out.html", brand="adfs"))
    return oidc.end_session(response, COOKIE, COOKIE_PATH)


@bp.get("/portal/script/onload.js")
def onload_js():
    return Response(render_template("onload.js", portal_url=sim().portal_url), mimetype="application/javascript")
