"""Headers on every response: strict CSP, no framing, no caching of personal pages, HSTS, the request id."""
from __future__ import annotations

from flask import Flask, g, request
from flask.sessions import SecureCookieSessionInterface

from app.logs import REQUEST_ID_HEADER, request_id_from

PUBLIC_ENDPOINTS = ("static", "site.logo")  # the same for everyone: may be cached


class SchemeAwareSessionInterface(SecureCookieSessionInterface):
    """Mark the session cookie Secure whenever the request came over https (the demo may use http loopback)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or super().get_cookie_secure(app)


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


def install(app: Flask, *, form_targets: tuple[str, ...]) -> None:
    """Add the headers after every request."""
    csp = content_security_policy(form_targets)
    app.session_interface = SchemeAwareSessionInterface()

    @app.before_request
    def name_the_request():
        # Every log line of this request and its error page carry this id, so a student can quote it.
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))

    @app.after_request
    def add_headers(response):
        response.headers[REQUEST_ID_HEADER] = g.get("request_id") or request_id_from(None)
        response.headers["Content-Security-Policy"] = csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        if request.endpoint not in PUBLIC_ENDPOINTS:
            # Every page may show one student's data; a shared kiosk or proxy must never keep it.
            response.headers["Cache-Control"] = "no-store"
            response.headers["Pragma"] = "no-cache"
        if request.is_secure:
            response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        return response
