"""Blueprints by audience, and what every view shares: the services and the signed-in student."""
from __future__ import annotations

from functools import wraps

from flask import current_app, g, redirect, request, url_for

from app.domain.sessions import SessionKind, SessionRecord

# The browser's only handle on its portal session: a random token, HttpOnly, gone when the browser closes.
SESSION_COOKIE = "proofup_sid"
STUDENT_KINDS = (SessionKind.STUDENT, SessionKind.KIOSK)


def services():
    """Return the Services the app was built with."""
    return current_app.extensions["proofup"]


def current_session() -> SessionRecord | None:
    """Return the live server-side session behind this request's cookie, or None (read once per request)."""
    if "portal_session" not in g:
        g.portal_session = services().sessions.resolve(request.cookies.get(SESSION_COOKIE))
    return g.portal_session


def signed_in_upn() -> str | None:
    """Return the UPN of the signed-in student, or None."""
    record = current_session()
    return record.upn if record is not None and record.kind in STUDENT_KINDS else None


def login_required(view):
    """Send visitors who are not signed in to the start page."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not signed_in_upn():
            return redirect(url_for("student.index"))
        return view(*args, **kwargs)

    return wrapper


def set_session_cookie(response, token: str) -> None:
    """Give the browser its session token: HttpOnly, Lax, Secure over https, no expiry date (ends with the browser)."""
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Lax", secure=request.is_secure, path="/")


def clear_session_cookie(response) -> None:
    """Remove the session token from the browser."""
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="Lax", secure=request.is_secure, path="/")
