"""Sign-in and sign-out: MSAL auth-code flow (PKCE, form_post) kept server-side between the two legs."""
from __future__ import annotations

import base64
import hashlib
import json
import logging

from cryptography.fernet import Fernet, InvalidToken
from flask import Blueprint, current_app, flash, redirect, request, session, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l

from app import csrf
from app.domain.sessions import SessionKind
from app.services.events import SignInEvent
from app.services.sessions import owner_of
from app.web import (
    SESSION_COOKIE,
    audit_refusal,
    clear_session_cookie,
    client_address,
    current_session,
    request_actor,
    services,
    set_session_cookie,
    signed_in_upn,
)
from app.web.errors import error_page, wait_words

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

FLOW_KIND = "proofup_kind"  # kept in the sealed flow: which audience the sign-in was started for
FLOW_TTL_SECONDS = 600  # how long a student may take on the authority's sign-in page
SIGN_IN_FAILED = (_l("Sign-in did not work"),
                  _l("Nothing was changed. Go back to the start page and sign in again with your university "
                     "account."))
SIGNED_OUT = _l("You are signed out. Close the browser if this is a shared computer.")
SIGN_IN_BUSY = _l("The sign-in service is busy")
SIGN_IN_EXPIRED = (_l("Your sign-in took too long or was already used"),
                   _l("For your security each sign-in link works once and for ten minutes. Go back to the start "
                      "page and sign in again."))


def _fernet() -> Fernet:
    """Derive the flow encryption key from the secret key (the flow holds the PKCE verifier)."""
    digest = hashlib.sha256(b"proofup sign-in flow\0" + current_app.config["SECRET_KEY"].encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal_flow(flow: dict) -> str:
    """Encrypt a flow for the store."""
    return _fernet().encrypt(json.dumps(flow).encode()).decode("ascii")


def open_flow(blob: str) -> dict | None:
    """Decrypt a stored flow; None if it was tampered with or sealed under another key."""
    try:
        return json.loads(_fernet().decrypt(blob.encode("ascii"), ttl=FLOW_TTL_SECONDS))
    except (InvalidToken, ValueError):
        return None


@bp.get("/sign-in")
def sign_in():
    """Send the visitor to the authority's sign-in page."""
    if signed_in_upn():
        return redirect(url_for("student.diagnosis"))
    return _begin(SessionKind.STUDENT)


@bp.get("/helpdesk/sign-in")
def staff_sign_in():
    """Send a staff member to the authority: a fresh sign-in (prompt=login) through the staff application."""
    return _begin(SessionKind.STAFF)


def _begin(kind: SessionKind):
    """Start an auth-code flow for an audience and keep it, sealed, until the callback."""
    svc = services()
    identity = svc.staff_identity if kind is SessionKind.STAFF else svc.identity
    auth_uri, flow = identity.begin_sign_in(url_for("auth.callback", _external=True),
                                            force_login=kind is SessionKind.STAFF)
    flow[FLOW_KIND] = kind.value
    svc.store.put_sign_in_flow(flow["state"], seal_flow(flow), FLOW_TTL_SECONDS)
    return redirect(auth_uri)


@bp.post("/auth/callback")
@csrf.exempt  # a cross-site form_post from the authority: protected by state, nonce and PKCE instead
def callback():
    """Finish the sign-in: check the answer, take the flow by its state, redeem the code, start a fresh session."""
    from app.domain.identity import SignInError, read_authority_response

    svc = services()
    try:
        answer = read_authority_response(request.form.to_dict(flat=False))
    except SignInError as exc:
        log.warning("sign-in answer refused: %s", exc.reason)
        audit_refusal("sign_in.refused", "bad_response")
        return error_page(400, *SIGN_IN_FAILED)
    blob = svc.store.take_sign_in_flow(answer.state)
    flow = open_flow(blob) if blob else None
    if flow is None:
        audit_refusal("sign_in.refused", "unknown_or_used_state")
        return error_page(400, *SIGN_IN_EXPIRED)
    staff = flow.get(FLOW_KIND) == SessionKind.STAFF.value
    try:
        user = (svc.staff_identity if staff else svc.identity).complete_sign_in(flow, answer)
    except SignInError as exc:
        log.warning("sign-in refused: %s", exc.code)
        audit_refusal("sign_in.refused", exc.code)
        svc.events.emit(svc.events.sign_in_failed, None, SignInEvent(request_actor(), code=exc.code))
        if exc.retry_after is not None:
            return busy_page(exc.retry_after)
        return error_page(400, *SIGN_IN_FAILED)
    if staff:
        from app.web.helpdesk.access import admission_refused

        refused = admission_refused(user)  # no MFA in the token, or no staff role: a 403, audited
        if refused is not None:
            return refused
    # A new session at sign-in: nothing from before (a kiosk's last visitor) survives, and the browser's
    # previous session token, if any, stops working (rotation).
    session.clear()
    kind = SessionKind.STAFF if staff else SessionKind.STUDENT
    token = svc.sessions.start(kind=kind, upn=user.upn, display_name=user.display_name, mfa=staff,
                               client_address=client_address(), replaces=request.cookies.get(SESSION_COOKIE))
    svc.events.emit(svc.events.sign_in_succeeded, None, SignInEvent(owner_of(kind, user.upn), upn=user.upn))
    response = redirect(url_for("helpdesk.now" if staff else "student.diagnosis"))
    set_session_cookie(response, token)
    return response


def busy_page(wait_seconds: int):
    """Say the sign-in service is busy and when to try again (503 with Retry-After)."""
    message = gettext("Microsoft's sign-in service is busy right now. Nothing was changed. Please wait %(wait)s, "
                      "then sign in again.", wait=wait_words(wait_seconds))
    body, status = error_page(503, SIGN_IN_BUSY, message)
    return body, status, {"Retry-After": str(wait_seconds)}


@bp.post("/sign-out")
def sign_out():
    """End the portal session (revoked on the server: a copied cookie opens nothing) and the authority's session."""
    svc = services()
    record = current_session()  # a staff member signs out as themself, through the staff application
    actor = owner_of(record.kind, record.upn) if record is not None else request_actor()
    svc.sessions.end(request.cookies.get(SESSION_COOKIE), actor=actor)
    session.clear()
    flash(SIGNED_OUT, "info")
    identity = svc.staff_identity if record is not None and record.kind is SessionKind.STAFF else svc.identity
    response = redirect(identity.logout_url(url_for("student.index", _external=True)))
    clear_session_cookie(response)
    return response
