"""Headers on every response: strict CSP, no framing, no caching of personal pages, HSTS, the request id."""
from __future__ import annotations

from flask import Flask, g, request

from app.logs import REQUEST_ID_HEADER, request_id_from

PUBLIC_ENDPOINTS = ("static", "site.logo")  # the same for everyone: may be cached
# The header as WSGI hands it over: read straight from there, a missing header costs no KeyError inside Werkzeug.
REQUEST_ID_ENVIRON = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")


def content_security_policy(form_targets: tuple[str, ...]) -> str:
    """Return a CSP with no inline script or style; forms may post (and redirect) only to us and the authority."""
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self' " + " ".join(form_targets),
    ])


def security_headers(form_targets: tuple[str, ...], *, https: bool) -> tuple[tuple[str, str], ...]:
    """Return the headers every response carries, whatever it shows."""
    return (
        ("Content-Security-Policy", content_security_policy(form_targets)),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        # same-origin: nothing leaks to Microsoft or My Sign-Ins, and our own POSTs keep their Origin header
        # (under no-referrer browsers send "Origin: null" even to the same origin, defeating the Origin check).
        ("Referrer-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
        *((("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),) if https else ()),
    )


# Every page may show one student's data; a shared kiosk or proxy must never keep it.
PRIVATE_HEADERS = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


def install(app: Flask, *, form_targets: tuple[str, ...], https: bool) -> None:
    """Add the headers after every request (HSTS when the portal's public address is https)."""
    shared = security_headers(form_targets, https=https)
    # Made once: a poll every 2 s per student must not build the same strings each time.
    private = shared + PRIVATE_HEADERS
    ours = frozenset(name.lower() for name, _ in ((REQUEST_ID_HEADER, ""), *private))

    @app.before_request
    def name_the_request():
        # Every log line of this request and its error page carry this id, so a student can quote it.
        g.request_id = request_id_from(request.environ.get(REQUEST_ID_ENVIRON))

    @app.after_request
    def add_headers(response):
        headers = private if request.endpoint not in PUBLIC_ENDPOINTS else shared
        pairs = ((REQUEST_ID_HEADER, g.get("request_id") or request_id_from(None)), *headers)
        if ours.isdisjoint(name.lower() for name in response.headers.keys()):
            response.headers.extend(pairs)  # nothing to replace: append them all at once
        else:
            for name, value in pairs:  # ours win over a view's own value
                response.headers[name] = value
        return response
