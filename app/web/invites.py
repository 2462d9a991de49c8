"""The invite link: GET shows a "Continue" button and changes nothing; its POST opens the invite and signs in.

Mail scanners fetch every link in a mail before the student does, so only the POST from the page counts. The
link is not a sign-in: the student signs in as usual, and auth.complete hands the pending invite to
redeem_after_sign_in, which spends it only for the invite's own account. Every bad token (malformed, unknown,
used, expired, revoked, bounced) gets the same page and status, audited with a short hash prefix at most.
"""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, session, url_for
from flask_babel import lazy_gettext as _l

from app.domain.actors import Actor
from app.domain.invites import InviteRefusal
from app.domain.sessions import SessionKind
from app.services.invites import InviteRefused
from app.web import audit_refusal, client_address, current_session, request_actor, services
from app.web.errors import error_page

bp = Blueprint("invites", __name__)
SHOWN_PATH = "/invite/(token)"  # what the audit trail keeps of the path: never the token
INVITE_KEY = "invite"  # session key: the id of the invite this sign-in spent (an id, never the token)
LINK_DEAD = (_l("This link does not work (any more)"),
             _l("Invite links work once and only for a few days. Nothing was changed. Ask the IT service desk for "
                "a new link, or go to the start page and sign in with your university account."))
OTHER_ACCOUNT = (_l("This invite is for another account"),
                 _l("You signed in with a different account than the one the invite was sent to. Nothing was "
                    "changed and the invite still works. Sign out, then open the link again and sign in with the "
                    "account named in the mail."))


def _dead_link(refused: InviteRefused):
    """Audit a refused token and show the one answer for every bad token (404, whatever the reason)."""
    upn = refused.invite.upn if refused.invite is not None else None
    audit_refusal("invite.refused", refused.code.value, upn=upn, link_hash=refused.link_hash, path=SHOWN_PATH)
    return error_page(404, *LINK_DEAD)


@bp.get("/invite/<path:token>")
def show(token: str):
    """Show the invite's page with its "Continue" button (nothing changes: scanners fetch links too)."""
    try:
        invite = services().invites.check(token)
    except InviteRefused as refused:
        return _dead_link(refused)
    return render_template("student/invite.html", token=token, expires_at=invite.expires_at)


@bp.post("/invite/<path:token>")
def take(token: str):
    """Open the invite (the student pressed "Continue") and start the normal sign-in."""
    svc = services()
    try:
        invite = svc.invites.open(token, request_actor(), client=client_address())
    except InviteRefused as refused:
        return _dead_link(refused)
    record = current_session()
    if record is not None and record.kind is SessionKind.STUDENT:  # already signed in: no second sign-in
        refused_page = redeem_after_sign_in(invite.id, record.upn)
        if refused_page is None:
            remember_invite(invite.id)
        return refused_page or redirect(url_for("student.diagnosis"))
    from app.web.auth import begin_sign_in

    return begin_sign_in(SessionKind.STUDENT, invite_id=invite.id, login_hint=invite.upn)


def redeem_after_sign_in(invite_id: int, upn: str):
    """Spend the invite for the account that signed in; return the refusal page (nothing spent) or None."""
    svc = services()
    try:
        svc.invites.redeem(invite_id, upn, Actor.student(upn), client=client_address())
    except InviteRefused as refused:
        invite = refused.invite
        if refused.code is InviteRefusal.OTHER_ACCOUNT:
            audit_refusal("invite.refused", refused.code.value, upn=invite.upn, severity="warning",
                          invite_id=invite_id, signed_in=str(upn), path=SHOWN_PATH)
            return error_page(403, *OTHER_ACCOUNT)
        audit_refusal("invite.refused", refused.code.value, upn=invite.upn if invite else None,
                      invite_id=invite_id, path=SHOWN_PATH)
        return error_page(404, *LINK_DEAD)
    return None


def remember_invite(invite_id: int) -> None:
    """Keep the spent invite's id for this sign-in, so the unlock that follows is credited to its batch."""
    session[INVITE_KEY] = invite_id


def used_invite() -> int | None:
    """Return the id of the invite this sign-in spent, if any (the grant service checks it is the student's)."""
    value = session.get(INVITE_KEY)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
