"""Sign a person in through MSAL (AD FS or Entra authority) and verify the id_token the portal relies on."""
from __future__ import annotations

import hmac
import logging
import math
import re
import threading
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, Callable, Mapping
from urllib.parse import urlencode, urlparse

import jwt
import msal
import msal.telemetry
import requests
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from app.adapters.http import forget_connections_after_fork, make_session
from app.config import authority_tenant
from app.domain.identity import MSG_TRY_AGAIN, AuthorityResponse, SignedInUser, SignInError

log = logging.getLogger(__name__)

LEEWAY_SECONDS = 120  # clock skew tolerated between the portal and the authority (MSAL uses the same)
JWKS_REFRESH_SECONDS = 60  # an unknown kid refetches the key set at most this often
ALGORITHMS = ["RS256"]  # what AD FS 2019 and Entra sign id_tokens with
# Claims kept on the signed-in user: identity, roles and groups for the helpdesk role, how they signed in.
KEPT_CLAIMS = ("name", "upn", "preferred_username", "unique_name", "oid", "tid",
               "roles", "groups", "amr", "authmethod", "auth_time", "idp")
_AUTHORITY_CODE = re.compile(r"\b(AADSTS\d+|MSIS\d+)\b")
# Errors the authority answers when the person stopped the sign-in themselves (RFC 6749 4.1.2.1, Entra's AADSTS65004).
_CANCEL_ERRORS = {"access_denied", "consent_required", "interaction_required", "login_required"}

# A token endpoint that answers 429 or 5xx is busy: the student may try again after its Retry-After, or this.
BUSY_DEFAULT_SECONDS = 30
BUSY_MAX_SECONDS = 3600


class _NoTokenCache(msal.TokenCache):
    """A token cache that keeps nothing: the portal needs the identity, never the tokens."""

    def add(self, event, now=None):  # noqa: ARG002 - MSAL's signature
        pass


class _FreshTelemetry:
    """Give every MSAL call a telemetry buffer of its own.

    MSAL keeps one buffer per application, puts each failed call's error into a header of the next token
    request and clears it only after a success: one bad answer would reach every later student's request.
    """

    def _build_telemetry_context(self, api_id, correlation_id=None, refresh_reason=None):
        return msal.telemetry._TelemetryContext(  # noqa: SLF001 - the only way to give MSAL a buffer
            {}, threading.Lock(), api_id, correlation_id=correlation_id, refresh_reason=refresh_reason)


class _NoPostCache(dict):
    """MSAL's HTTP cache without its memory of token endpoint answers (discovery GETs are still cached).

    MSAL 1.39 keeps a 429 or 5xx token answer for its Retry-After under a key meant to include the code, but
    it looks the code up wrongly, so the key is the same for everyone: one student's 429 would answer every
    student's redemption from the cache. The portal decides about a busy answer per student instead.
    """

    def __setitem__(self, key, value):
        if isinstance(key, str) and key.startswith("POST "):
            return
        super().__setitem__(key, value)


class _ConfidentialClient(_FreshTelemetry, msal.ConfidentialClientApplication):
    """MSAL's confidential client without shared telemetry."""


class _PublicClient(_FreshTelemetry, msal.PublicClientApplication):
    """MSAL's public client without shared telemetry."""


class IdTokenValidator:
    """Verify an id_token's signature (JWKS), issuer, audience (and azp), lifetime and, for Entra, tenant."""

    def __init__(self, issuer: str, client_id: str, fetch_jwks: Callable[[], dict], *, tenant_id: str = "",
                 leeway: float = LEEWAY_SECONDS, clock: Callable[[], float] = time.time):
        if not issuer or not client_id:
            raise ValueError("an id_token can only be checked against an issuer and a client id")
        if "{tenantid}" in issuer and not tenant_id:
            raise ValueError("a multi-tenant issuer can only be checked with the tenant pinned")
        self.issuer = issuer
        self.client_id = client_id
        self.tenant_id = tenant_id.lower()  # Entra: the token's tid must be this tenant
        self._fetch_jwks = fetch_jwks
        self._leeway = leeway
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def validate(self, id_token: str) -> dict[str, Any]:
        """Return the token's claims, or raise SignInError(code="invalid_token" or "token_expired")."""
        try:
            header = jwt.get_unverified_header(id_token)
            if header.get("alg") not in ALGORITHMS:
                raise jwt.InvalidAlgorithmError(f"algorithm {header.get('alg')!r} is not accepted")
            key = self._key(header.get("kid") or "")
            claims = jwt.decode(
                id_token, key.key, algorithms=ALGORITHMS, audience=self.client_id,
                issuer=self._expected_issuer(), leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
            self._check_party_and_tenant(claims)
            return claims
        except jwt.ExpiredSignatureError:
            log.warning("id_token rejected: expired")
            raise SignInError("Your sign-in has expired. " + MSG_TRY_AGAIN, "token_expired") from None
        except jwt.PyJWTError as error:
            log.warning("id_token rejected: %s", error.__class__.__name__)
            raise SignInError("The sign-in could not be verified. " + MSG_TRY_AGAIN, "invalid_token") from None

    def _expected_issuer(self) -> str:
        # Entra's multi-tenant metadata says ".../{tenantid}/v2.0": filled with the pinned tenant, never the token's.
        return self.issuer.replace("{tenantid}", self.tenant_id)

    def _check_party_and_tenant(self, claims: Mapping[str, Any]) -> None:
        # OpenID Connect Core 3.1.3.7: a token for several audiences is ours only if we are its authorized party.
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if (any(a != self.client_id for a in audiences) or azp is not None) and azp != self.client_id:
            raise jwt.InvalidAudienceError("token is for other audiences and its azp is not this client")
        if self.tenant_id and str(claims.get("tid", "")).lower() != self.tenant_id:
            raise jwt.InvalidIssuerError("token is from another tenant")

    def _key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            if kid not in self._keys and self._clock() - self._fetched_at >= JWKS_REFRESH_SECONDS:
                self._refresh()
            try:
                return self._keys[kid]
            except KeyError:
                raise jwt.InvalidKeyError("unknown signing key") from None

    def _refresh(self) -> None:
        self._fetched_at = self._clock()
        key_set = jwt.PyJWKSet.from_dict(self._fetch_jwks())
        self._keys = {k.key_id: k for k in key_set.keys if k.key_id}


def is_adfs_authority(authority: str) -> bool:
    """Tell whether an authority URL names AD FS (its path is /adfs) rather than Entra."""
    return urlparse(authority).path.rstrip("/").lower().endswith("/adfs")


class Identity:
    """The portal's sign-in: authorization code flow with PKCE and form_post, verified id_token."""

    def __init__(self, authority: str, client_id: str, client_secret: str = "", *, tenant_id: str = "",
                 ca_file: str | None = None, timeout: float = 10.0):
        if urlparse(authority).scheme != "https" or not urlparse(authority).path.strip("/"):
            raise ValueError(f"authority must be an https URL with a path, not {authority!r}")
        if not client_id:
            raise ValueError("client_id is required")
        self.authority = authority.rstrip("/")
        self.client_id = client_id
        self.is_adfs = is_adfs_authority(authority)
        # Entra: every token must come from this tenant (the authority's GUID, else the tenant_id given).
        self.tenant_id = "" if self.is_adfs else authority_tenant(authority, tenant_id)
        if not self.is_adfs and not self.tenant_id:
            raise ValueError(f"an Entra authority needs its tenant id pinned: {authority!r}")
        self._client_secret = client_secret
        self._ca_file, self._timeout = ca_file, timeout
        self._token_answer = threading.local()  # status and Retry-After of this thread's last token request
        # Every call to the authority (MSAL, discovery, keys) goes through this one session.
        self.http_session = self._new_session()
        self._app: msal.ClientApplication | None = None
        self._metadata: dict[str, Any] | None = None
        self._validator: IdTokenValidator | None = None
        self._lock = threading.Lock()
        forget_connections_after_fork(self)

    @classmethod
    def from_settings(cls, settings) -> "Identity":
        """Build the sign-in adapter from Settings (authority, client_id, client_secret, ca_bundle)."""
        return cls(settings.authority, settings.client_id, settings.client_secret, tenant_id=settings.tenant_id,
                   ca_file=settings.ca_bundle or None)

    @property
    def discovery_url(self) -> str:
        """Return the OIDC discovery document's URL (AD FS has no /v2.0 segment)."""
        return self.authority + ("" if self.is_adfs else "/v2.0") + "/.well-known/openid-configuration"

    def begin_sign_in(self, redirect_uri: str, *, force_login: bool = False,
                      login_hint: str | None = None) -> tuple[str, dict]:
        """Return the URL to send the browser to and the flow to keep in the session until it comes back."""
        app = self._msal()
        flow = app.initiate_auth_code_flow(
            [],  # MSAL adds openid and profile itself: the portal asks for nothing else
            redirect_uri=redirect_uri,
            prompt=msal.Prompt.LOGIN if force_login else None,
            login_hint=login_hint or None,
            response_mode="form_post",
        )
        return flow["auth_uri"], flow

    def complete_sign_in(self, flow: Mapping[str, Any] | None, response: AuthorityResponse) -> SignedInUser:
        """Redeem the authority's checked answer for a verified SignedInUser, or raise SignInError."""
        if not flow or not flow.get("state"):
            raise SignInError("Your sign-in took too long or was started in another window. " + MSG_TRY_AGAIN,
                              "expired_flow")
        if not hmac.compare_digest(str(flow["state"]).encode(), response.state.encode()):
            log.warning("sign-in answer refused: state mismatch")
            raise SignInError("This sign-in answer does not belong to this browser session. " + MSG_TRY_AGAIN,
                              "state_mismatch")
        if response.error:
            # The authority's error stays with the portal: MSAL would keep it and send it with later requests.
            raise _authority_error(response.error, response.error_description)
        app = self._msal()
        self._token_answer.status, self._token_answer.retry_after = 0, None
        try:
            result = app.acquire_token_by_auth_code_flow(dict(flow), {"state": response.state, "code": response.code})
        except RuntimeError:
            log.warning("sign-in response rejected by MSAL: nonce mismatch")
            raise SignInError("The sign-in could not be verified. " + MSG_TRY_AGAIN, "invalid_token") from None
        except requests.RequestException as error:
            raise _unreachable(error) from None
        except (msal.exceptions.MsalServiceError, ValueError) as error:
            # 5xx (MSAL raises) or an answer that is not JSON: busy if the status says so, otherwise unusable.
            raise self._busy() or _bad_answer(error) from None
        if "error" in result:
            raise self._busy() or _authority_error(result.get("error", ""), result.get("error_description", ""))
        id_token = result.get("id_token")
        if not id_token:
            raise SignInError("The sign-in service sent no identity. " + MSG_TRY_AGAIN, "invalid_token")
        return user_from_claims(self._token_validator().validate(id_token))

    def _busy(self) -> SignInError | None:
        """Return a "busy" error if the last token answer on this thread was 429 or 5xx, else None."""
        status = self._token_answer.status
        if status != 429 and status < 500:
            return None
        wait = retry_after_seconds(self._token_answer.retry_after)
        log.warning("sign-in service busy: token endpoint answered %s, retry after %s s", status, wait)
        return SignInError("The sign-in service is busy. Please try again in a moment.", "busy", retry_after=wait)

    def _remember_token_answer(self, response: requests.Response, *args, **kwargs) -> None:
        # MSAL hides the token endpoint's status and Retry-After (it raises or returns the JSON body): a
        # response hook on the portal's session keeps them for the thread that made the call.
        if response.request.method == "POST":
            self._token_answer.status = response.status_code
            self._token_answer.retry_after = response.headers.get("Retry-After")

    def _new_session(self) -> requests.Session:
        session = make_session(self._ca_file, timeout=self._timeout)
        session.hooks["response"].append(self._remember_token_answer)
        return session

    def logout_url(self, post_logout_redirect_uri: str) -> str:
        """Return the authority's end-session URL that comes back to post_logout_redirect_uri."""
        try:
            endpoint = self._discovery().get("end_session_endpoint")
        except SignInError:
            endpoint = None  # signing out must work even when the authority's metadata cannot be read
        endpoint = endpoint or self.authority + ("/oauth2/logout" if self.is_adfs else "/oauth2/v2.0/logout")
        query = urlencode({"post_logout_redirect_uri": post_logout_redirect_uri, "client_id": self.client_id})
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    def _after_fork(self) -> None:
        # A gunicorn worker forked from a preloaded master must not share the master's TLS connections.
        self._lock = threading.Lock()
        self.http_session = self._new_session()
        self._app = None
        self._validator = None

    def _msal(self) -> msal.ClientApplication:
        with self._lock:
            if self._app is None:
                self._app = self._build_msal()
            return self._app

    def _build_msal(self) -> msal.ClientApplication:
        # Instance discovery asks login.microsoftonline.com about the host: right for Microsoft's hosts only.
        microsoft_host = urlparse(self.authority).hostname in WELL_KNOWN_AUTHORITY_HOSTS
        options = dict(
            authority=self.authority, http_client=self.http_session, token_cache=_NoTokenCache(),
            http_cache=_NoPostCache(),
            instance_discovery=None if microsoft_host else False,
            exclude_scopes=["offline_access"],  # no refresh token: the portal keeps no tokens
        )
        try:
            if self._client_secret:
                return _ConfidentialClient(self.client_id, client_credential=self._client_secret, **options)
            return _PublicClient(self.client_id, **options)
        except requests.RequestException as error:
            raise _unreachable(error) from None
        except ValueError as error:  # MSAL: the discovery document is missing or malformed
            log.error("sign-in authority %s is not usable: %s", self.authority, error)
            raise SignInError("The sign-in service is not available right now. Please try again in a few minutes.",
                              "unreachable") from None

    def _discovery(self) -> dict[str, Any]:
        with self._lock:
            if self._metadata is None:
                self._metadata = self._get_json(self.discovery_url)
            return self._metadata

    def _token_validator(self) -> IdTokenValidator:
        metadata = self._discovery()
        with self._lock:
            if self._validator is None:
                jwks_uri = metadata.get("jwks_uri", "")
                if not (metadata.get("issuer") and jwks_uri):
                    # Without both, the issuer check or the signature check would silently not happen.
                    log.error("sign-in authority %s publishes no issuer or jwks_uri", self.authority)
                    raise SignInError("The sign-in service is not available right now. "
                                      "Please try again in a few minutes.", "unreachable")
                self._validator = IdTokenValidator(metadata.get("issuer", ""), self.client_id,
                                                   lambda: self._get_json(jwks_uri), tenant_id=self.tenant_id)
            return self._validator

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = self.http_session.get(url)
            response.raise_for_status()
            return response.json()
        except (requests.RequestException, ValueError) as error:
            raise _unreachable(error) from None


def user_from_claims(claims: Mapping[str, Any]) -> SignedInUser:
    """Map verified id_token claims of AD FS (upn, unique_name) or Entra (preferred_username, oid, tid)."""
    # Never `email`: an address can differ from the UPN (aliases) and would name the wrong account.
    upn = next((str(claims[k]) for k in ("upn", "preferred_username", "unique_name")
                if "@" in str(claims.get(k, ""))), "")
    if not upn:
        raise SignInError("Your account has no user principal name the portal can use. "
                          "Please contact the IT helpdesk.", "no_upn")
    display_name = str(claims.get("name") or " ".join(
        str(claims[k]) for k in ("given_name", "family_name") if claims.get(k)) or upn)
    iat = claims.get("iat")
    return SignedInUser(
        upn=upn.lower(),
        display_name=display_name,
        subject=str(claims.get("sub", "")),
        object_id=str(claims.get("oid", "")),
        tenant_id=str(claims.get("tid", "")),
        issued_at=datetime.fromtimestamp(iat, timezone.utc) if isinstance(iat, (int, float)) else None,
        claims=MappingProxyType({k: claims[k] for k in KEPT_CLAIMS if k in claims}),
    )


def _authority_error(error: str, description: str) -> SignInError:
    """Turn an OAuth error answer into a message for the person, keeping Microsoft's code for the helpdesk."""
    match = _AUTHORITY_CODE.search(description or "")
    reference = f" (reference: {match.group(1)})" if match else ""
    log.warning("sign-in refused by the authority: %s%s", error, reference)
    if error in _CANCEL_ERRORS or (match and match.group(1) == "AADSTS65004"):
        return SignInError("The sign-in was cancelled. You can start again whenever you are ready.", "cancelled")
    return SignInError(f"The sign-in service refused the sign-in{reference}. " + MSG_TRY_AGAIN, "authority_error")


def retry_after_seconds(value: str | None) -> int:
    """Read a Retry-After header (seconds, possibly fractional, or an HTTP date) as whole seconds to wait."""
    seconds: float = BUSY_DEFAULT_SECONDS
    if value:
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()
            except (TypeError, ValueError):
                seconds = BUSY_DEFAULT_SECONDS
    if not math.isfinite(seconds):
        seconds = BUSY_DEFAULT_SECONDS
    return int(min(BUSY_MAX_SECONDS, max(1, math.ceil(seconds))))


def _bad_answer(error: Exception) -> SignInError:
    log.warning("sign-in service sent an answer the portal cannot use: %s", error.__class__.__name__)
    return SignInError("The sign-in service sent an answer the portal cannot use. " + MSG_TRY_AGAIN, "bad_response")


def _unreachable(error: Exception) -> SignInError:
    log.error("sign-in authority unreachable: %s", error.__class__.__name__)
    return SignInError("The sign-in service is not reachable right now. Please try again in a few minutes.",
                       "unreachable")
