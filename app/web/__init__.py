"""Blueprints by audience, and what every view shares: the services and the signed-in student."""
from __future__ import annotations

import logging
import threading
import time
from functools import wraps

from flask import current_app, g, jsonify, redirect, request, url_for

from app.domain.actors import Actor
from app.domain.sessions import SessionKind, SessionRecord
from app.domain.upn import Upn
from app.services.events import RefusalEvent

# The browser's only handle on its portal session: a random token, HttpOnly, gone when the browser closes.
SESSION_COOKIE = "proofup_sid"
STUDENT_KINDS = (SessionKind.STUDENT, SessionKind.KIOSK)
# Refusals are audited, but a script posting junk must not fill the database: per process, at most this
# many refusal rows a minute from one client address; the rest are counted in the log instead.
REFUSALS_PER_MINUTE = 30
log = logging.getLogger(__name__)


def services():
    """Return the Services the app was built with."""
    return current_app.extensions["proofup"]


def client_address() -> str:
    """Return the client's address (ProxyFix has already taken it from X-Forwarded-For when proxies are trusted)."""
    return request.remote_addr or "unknown"


def current_session() -> SessionRecord | None:
    """Return the live server-side session behind this request's cookie, or None (read once per request)."""
    if "portal_session" not in g:
        g.portal_session = services().sessions.resolve(request.cookies.get(SESSION_COOKIE))
    return g.portal_session


def signed_in_upn() -> Upn | None:
    """Return the UPN of the signed-in student, or None."""
    record = current_session()
    return Upn(record.upn) if record is not None and record.kind in STUDENT_KINDS else None


def signed_in_actor() -> Actor:
    """Return the signed-in student as the actor of their own requests (login_required views only)."""
    upn = signed_in_upn()
    if upn is None:
        raise RuntimeError("signed_in_actor() outside a login_required view")
    return Actor.student(upn)


def request_actor() -> Actor:
    """Return who is asking: the signed-in student, else a visitor named by the client address."""
    upn = signed_in_upn()
    return Actor.student(upn) if upn else Actor.visitor(client_address())


def login_required(view):
    """Send visitors who are not signed in to the start page."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not signed_in_upn():
            return redirect(url_for("student.index"))
        return view(*args, **kwargs)

    return wrapper


def set_session_cookie(response, token: str) -> None:
    """Give the browser its session token: HttpOnly, Lax, Secure with an https public URL, no expiry date."""
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Lax",
                        secure=current_app.config["SESSION_COOKIE_SECURE"], path="/")


def clear_session_cookie(response) -> None:
    """Remove the session token from the browser."""
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="Lax",
                           secure=current_app.config["SESSION_COOKIE_SECURE"], path="/")


class RefusalThrottle:
    """Count refusals per client address and minute (per process; memory is dropped every minute)."""

    def __init__(self, per_minute: int = REFUSALS_PER_MINUTE):
        self.per_minute = per_minute
        self._minute = 0
        self._counts: dict[str, int] = {}
        self._guard = threading.Lock()

    def allow(self, client: str) -> bool:
        """Tell whether one more refusal from this address may be written this minute."""
        minute = int(time.monotonic() // 60)
        with self._guard:
            if minute != self._minute:
                self._minute, self._counts = minute, {}
            self._counts[client] = count = self._counts.get(client, 0) + 1
        return count <= self.per_minute


def audit_refusal(action: str, refusal: str, *, upn: str | None = None, severity: str = "info", **detail) -> None:
    """Write a refused request to the audit trail: who (the signed-in person, else the visitor), why, from where.

    Never raises: the refusal page must be shown even when the trail cannot be written.
    """
    client = client_address()
    throttle = current_app.extensions.setdefault("proofup_refusal_throttle", RefusalThrottle())
    if not throttle.allow(client):
        log.warning("refusal not audited (too many from %s this minute): %s %s", client, action, refusal)
        return
    try:
        event = RefusalEvent(request_actor(), action, refusal, upn or signed_in_upn(), client, severity,
                             detail={"method": request.method, "path": request.path[:200], **detail})
    except Exception:  # the session store (the database) may be what failed; the log keeps the trace
        log.exception("could not audit a refusal: %s %s", action, refusal)
        return
    events = services().events
    events.emit(events.refused, None, event)  # a failing subscriber is logged by emit; the page is shown anyway


def json_login_required(view):
    """Answer 401 to a script that is no longer signed in (it reloads the page, which explains why)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not signed_in_upn():
            return jsonify({"error": "signed_out"}), 401
        return view(*args, **kwargs)

    return wrapper
