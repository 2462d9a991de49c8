"""The portal's public address (PROOFUP_PUBLIC_URL): absolute URLs, the Host check and the Origin check.

Absolute URLs (the sign-in redirect URI, the post-logout URI) come from the setting, never from the
request's Host header. A request for another host is refused before anything runs, and a state-changing
request whose Origin (or, without one, Referer) is not the portal is refused too: CSRF tokens stay, this
is the second lock (the authority's cross-site callback is the one exemption; state, nonce, PKCE and the
browser binding protect it).
"""
from __future__ import annotations

import logging
from functools import lru_cache
from urllib.parse import urlparse

from flask import Flask, current_app, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l

from app.web import audit_refusal, client_address
from app.web.errors import error_page

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Answer whatever Host a load balancer's probe or a scraper uses (often the instance's address); they build no URL.
ANY_HOST_ENDPOINTS = frozenset({"ops.healthz", "ops.readyz", "ops.dependencies", "ops.metrics"})
# A cross-site POST by design: the authority's form_post answer.
CROSS_SITE_ENDPOINTS = frozenset({"auth.callback"})
DEFAULT_PORTS = {"http": 80, "https": 443}
WRONG_HOST_TITLE = _l("Wrong address")
WRONG_ORIGIN = (_l("This request did not come from the portal"),
                _l("For your security the portal only accepts forms sent from its own pages. Nothing was "
                   "changed. Go back to the start page and try again."))


def origin_of(url: str) -> str:
    """Return scheme://host[:port] of a URL, lower case, without the scheme's default port ("" if none)."""
    parts = urlparse(url.strip())
    try:
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return ""
    shown = f":{port}" if port and port != DEFAULT_PORTS[parts.scheme] else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{shown}"


def _public() -> tuple[str, str]:
    """Return (origin, path prefix) of PROOFUP_PUBLIC_URL."""
    return _split_public_url(current_app.config["PROOFUP_SETTINGS"].public_url)


@lru_cache(maxsize=8)  # one public address per app: parsed once, not on every request
def _split_public_url(public_url: str) -> tuple[str, str]:
    return origin_of(public_url), urlparse(public_url).path.rstrip("/")


def absolute_url(endpoint: str, **values) -> str:
    """Build an absolute URL for a view from PROOFUP_PUBLIC_URL (never from the request's Host)."""
    origin, prefix = _public()
    path = url_for(endpoint, **values)
    # A proxy that passes its prefix on (X-Forwarded-Prefix) puts it in script_root already: count it once.
    if request and request.script_root and path.startswith(request.script_root):
        path = path[len(request.script_root):]
    return origin + prefix + path


def _request_host_matches(origin: str) -> bool:
    host = request.host.lower()
    expected, default = _host_rule(origin)
    if host.endswith(default):
        host = host[: -len(default)]
    return host == expected


@lru_cache(maxsize=8)
def _host_rule(origin: str) -> tuple[str, str]:
    """Return the host[:port] an origin is reached under and the port suffix a browser may add for its scheme."""
    scheme, host = origin.split("://", 1)
    return host, f":{DEFAULT_PORTS[scheme]}"


def foreign_origin(origin: str) -> str | None:
    """Return why a state-changing request did not come from the portal's pages, or None if nothing says so.

    Every header the browser sent must agree: Sec-Fetch-Site "same-origin", Origin the portal's origin ("null",
    a sandbox or another site, is not), and, without an Origin, the Referer on the portal. A client that sends
    none of them (an old browser, a script) is left to the CSRF token.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return "fetch_site"
    sent = request.headers.get("Origin")
    if sent is not None:
        return None if origin_of(sent) == origin else "origin"
    referer = request.headers.get("Referer")
    if referer is not None and origin_of(referer) != origin:
        return "referer"
    return None


def _refuse(refusal: str, status: int, title, message):
    log.warning("request refused: %s (client %s, endpoint %s)", refusal, client_address(), request.endpoint)
    audit_refusal("request.refused", refusal, endpoint=request.endpoint or "")
    return error_page(status, title, message)


def install(app: Flask) -> None:
    """Refuse other hosts on every request and foreign origins on every state-changing one (run first)."""

    @app.before_request
    def check_host_and_origin():
        if request.endpoint in ANY_HOST_ENDPOINTS:
            return None
        origin, _prefix = _public()
        if not _request_host_matches(origin):
            # Not audited: nothing of ours was reached, and a scanner would fill the trail.
            log.warning("request refused: host %s is not %s (client %s)", request.host, origin, client_address())
            return error_page(400, WRONG_HOST_TITLE, gettext(
                "The portal is not reachable under this address. Its address is %(address)s.",
                address=current_app.config["PROOFUP_SETTINGS"].public_url))
        if request.method in SAFE_METHODS or request.endpoint in CROSS_SITE_ENDPOINTS:
            return None
        refusal = foreign_origin(origin)
        return _refuse(refusal, 403, *WRONG_ORIGIN) if refusal else None
