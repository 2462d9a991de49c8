"""Sign-in and sign-out: MSAL auth-code flow (PKCE, form_post) kept server-side between the two legs.

The authority's answer arrives as a cross-site POST (form_post), which carries none of the portal's
SameSite=Lax cookies. So the callback only checks the answer, takes the pending sign-in by its state and
parks it under a one-time ticket, then sends the browser on a same-site GET (/auth/complete) that does
carry the cookies: there the sign-in is finished only in the browser that started it (its binding cookie
must match), and a browser that is already signed in (Back after sign-in) simply lands on its diagnosis.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
from dataclasses import asdict

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
from app.web.public import absolute_url

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

FLOW_TTL_SECONDS = 600  # how long a student may take on the authority's sign-in page
TICKET_TTL_SECONDS = 60  # between the callback and the same-site hop that finishes it (one redirect)
BINDING_COOKIE = "proofup_signin"  # ties a pending sign-in to the browser that started it
SIGN_IN_KINDS = {k.value for k in SessionKind}
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32): bindings and tickets
SIGN_IN_FAILED = (_l("Sign-in did not work"),
                  _l("Nothing was changed. Go back to the start page and sign in again with your university "
                     "account."))
SIGNED_OUT = _l("You are signed out. Close the browser if this is a shared computer.")
SIGN_IN_BUSY = _l("The sign-in service is busy")
SIGN_IN_EXPIRED = (_l("Your sign-in took too long or was already used"),
                   _l("For your security each sign-in link works once and for ten minutes. Go back to the start "
                      "page and sign in again."))
SIGN_IN_OTHER_BROWSER = (_l("This sign-in was started in another browser"),
                         _l("For your security a sign-in can only be finished in the browser where it was "
                            "started. Nothing was changed. Go back to the start page and sign in again."))


def _fernet() -> Fernet:
    """Derive the flow encryption key from the secret key (the flow holds the PKCE verifier)."""
    digest = hashlib.sha256(b"proofup sign-in flow\0" + current_app.config["SECRET_KEY"].encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal_flow(record: dict) -> str:
    """Encrypt a pending sign-in (the flow and the browser it belongs to) for the store."""
    return _fernet().encrypt(json.dumps(record).encode()).decode("ascii")


def open_flow(blob: str) -> dict | None:
    """Decrypt a stored pending sign-in; None if it was tampered with or sealed under another key."""
    try:
        return json.loads(_fernet().decrypt(blob.encode("ascii"), ttl=FLOW_TTL_SECONDS))
    except (InvalidToken, ValueError):
        return None


def _browser_binding() -> str:
    """Return this browser's sign-in binding from its cookie, or a new one (two tabs share one)."""
    current = request.cookies.get(BINDING_COOKIE, "")
    return current if _TOKEN.fullmatch(current) else secrets.token_urlsafe(32)


def _binding_hash(binding: str) -> str:
    return hashlib.sha256(binding.encode("ascii")).hexdigest()


def _refused(refusal: str) -> None:
    """Log and audit a refused sign-in answer (never a value from it)."""
    log.warning("sign-in refused: %s (client %s)", refusal, client_address())
    audit_refusal("sign_in.refused", refusal)


@bp.get("/sign-in")
def sign_in():
    """Send the visitor to the authority's sign-in page."""
    if signed_in_upn():
        return redirect(url_for("student.diagnosis"))
    return begin_sign_in(SessionKind.STUDENT)


@bp.get("/helpdesk/sign-in")
def staff_sign_in():
    """Send a staff member to the authority: a fresh sign-in (prompt=login) through the staff application."""
    return begin_sign_in(SessionKind.STAFF)


def begin_sign_in(kind: SessionKind, *, invite_id: int | None = None, login_hint: str | None = None):
    """Start an auth-code flow for an audience and keep it, sealed and bound to this browser, until it is finished."""
    svc = services()
    if kind is SessionKind.STUDENT:
        from app.web.kiosk import current_kiosk

        # On an enrolled kiosk every student sign-in (an invite link's too) is a kiosk one: fresh, timed, signed
        # out everywhere at the end.
        kind = SessionKind.KIOSK if current_kiosk() is not None else kind
    binding = _browser_binding()
    identity = svc.staff_identity if kind is SessionKind.STAFF else svc.identity
    # Staff and kiosks sign in afresh every time (prompt=login): a live session at the authority is never reused.
    auth_uri, flow = identity.begin_sign_in(absolute_url("auth.callback"),
                                            force_login=kind in (SessionKind.STAFF, SessionKind.KIOSK),
                                            login_hint=login_hint)
    record = {"flow": flow, "browser": _binding_hash(binding), "kind": kind.value}
    if invite_id is not None:  # an invite link's "Continue": spent after the sign-in, for its own account only
        record["invite"] = invite_id
    svc.store.put_sign_in_flow(flow["state"], seal_flow(record), FLOW_TTL_SECONDS)
    response = redirect(auth_uri)
    # Lax: it comes with the same-site GET that finishes the sign-in, never with a cross-site POST. Path /:
    # a second tab's /sign-in must see it to reuse it, or it would replace the first tab's binding.
    response.set_cookie(BINDING_COOKIE, binding, max_age=FLOW_TTL_SECONDS, httponly=True, samesite="Lax",
                        secure=current_app.config["SESSION_COOKIE_SECURE"])
    return response


@bp.post("/auth/callback")
@csrf.exempt  # a cross-site form_post from the authority: protected by state, nonce, PKCE and the binding
def callback():
    """Check the authority's answer, park it under a one-time ticket and hop to /auth/complete.

    It never touches the session nor renders a page: this cross-site POST carries no cookies, and a page
    (with its CSRF token) would set a new, empty session cookie over the browser's own.
    """
    from app.domain.identity import SignInError, read_authority_response

    svc = services()
    try:
        answer = read_authority_response(request.form.to_dict(flat=False))
    except SignInError as exc:
        log.warning("sign-in answer refused: %s", exc.reason)
        _refused("bad_response")
        return redirect(url_for("auth.complete", problem="answer"), code=303)
    blob = svc.store.take_sign_in_flow(answer.state)
    record = open_flow(blob) if blob else None
    if record is None:
        _refused("unknown_or_used_state")  # used (Back, a replay), expired, or never ours
        return redirect(url_for("auth.complete", problem="expired"), code=303)
    ticket = secrets.token_urlsafe(32)
    svc.store.put_sign_in_flow("ticket:" + ticket, seal_flow({**record, "answer": asdict(answer)}),
                               TICKET_TTL_SECONDS)
    return redirect(url_for("auth.complete", ticket=ticket), code=303)


@bp.get("/auth/complete")
def complete():
    """Finish the sign-in in the browser that started it and start a fresh session."""
    from app.domain.identity import AuthorityResponse, SignInError

    ticket = request.args.get("ticket", "")
    blob = services().store.take_sign_in_flow("ticket:" + ticket) if _TOKEN.fullmatch(ticket) else None
    record = open_flow(blob) if blob else None
    binding = request.cookies.get(BINDING_COOKIE, "")
    if record is not None and not hmac.compare_digest(_binding_hash(binding), str(record.get("browser", ""))):
        _refused("other_browser")  # login CSRF: someone else's answer brought to this browser
        record, refusal = None, SIGN_IN_OTHER_BROWSER
    else:
        refusal = SIGN_IN_FAILED if request.args.get("problem") == "answer" else SIGN_IN_EXPIRED
    if record is None:
        signed_in = current_session()
        if signed_in is not None:  # Back or a reload after sign-in: the browser keeps the session it has
            return redirect(url_for(_home(signed_in.kind)))
        return error_page(400, *refusal)
    svc = services()
    kind = SessionKind(record["kind"]) if record.get("kind") in SIGN_IN_KINDS else SessionKind.STUDENT
    if kind is SessionKind.KIOSK:
        from app.web.kiosk import current_kiosk, not_a_kiosk

        if current_kiosk() is None:  # revoked while the student was at the authority
            return not_a_kiosk()
    identity = svc.staff_identity if kind is SessionKind.STAFF else svc.identity
    try:
        user = identity.complete_sign_in(record["flow"], AuthorityResponse(**record["answer"]))
    except SignInError as exc:
        _refused(exc.code)
        svc.events.emit(svc.events.sign_in_failed, None, SignInEvent(request_actor(), code=exc.code))
        if exc.retry_after is not None:
            return busy_page(exc.retry_after)
        return error_page(400, *SIGN_IN_FAILED)
    if kind is SessionKind.STAFF:
        from app.web.helpdesk.access import admission_refused

        refused = admission_refused(user)  # no MFA in the token, or no staff role: a 403, audited
        if refused is not None:
            return refused
    # A kiosk sign-in is a student's too (an invite's Continue on an enrolled kiosk): the invite is checked alike.
    invite_id = record.get("invite") if kind in (SessionKind.STUDENT, SessionKind.KIOSK) else None
    if isinstance(invite_id, int):
        from app.web.invites import redeem_after_sign_in

        refused = redeem_after_sign_in(invite_id, user.upn)  # another account: a 403, audited, not spent
        if refused is not None:
            return refused
    token = _start_session(user, kind)
    if isinstance(invite_id, int):
        from app.web.invites import remember_invite

        remember_invite(invite_id)  # after _start_session, which clears what the browser's session held
    response = redirect(url_for(_home(kind)))
    set_session_cookie(response, token)
    response.delete_cookie(BINDING_COOKIE, httponly=True, samesite="Lax",
                           secure=current_app.config["SESSION_COOKIE_SECURE"])
    return response


def _home(kind: SessionKind) -> str:
    """Return the endpoint a signed-in person of this kind starts from."""
    return "helpdesk.now" if kind is SessionKind.STAFF else "student.diagnosis"


def _start_session(user, kind: SessionKind) -> str:
    """Start a new session for the signed-in person and return its token.

    Nothing from before (a kiosk's last visitor) survives, and the browser's previous session token, if any,
    stops working (rotation): this same-site request carries it, unlike the authority's cross-site POST.
    """
    svc = services()
    session.clear()
    token = svc.sessions.start(kind=kind, upn=user.upn, display_name=user.display_name,
                               mfa=kind is SessionKind.STAFF, client_address=client_address(),
                               replaces=request.cookies.get(SESSION_COOKIE))
    svc.events.emit(svc.events.sign_in_succeeded, None, SignInEvent(owner_of(kind, user.upn), upn=user.upn))
    return token


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
    response = redirect(identity.logout_url(absolute_url("student.index")))
    clear_session_cookie(response)
    return response
