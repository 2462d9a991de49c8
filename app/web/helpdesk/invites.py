"""The console's invites: send one to a student (with a reason), list them by state, revoke one, and the mail
that did not arrive (bounced, or given up on)."""
from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l

from app.domain.invites import InviteError, InviteFilter, InviteState
from app.domain.upn import Upn
from app.web import client_address, services
from app.web.errors import error_page
from app.web.helpdesk import NAV, bp
from app.web.helpdesk.access import READ_ONLY, staff_required
from app.web.helpdesk.views import PAGE_SIZE, UNKNOWN_STUDENT, _seen_grant, _staff_actor

NAV.append(("helpdesk.invites", _l("Invites")))
INVITE_STATE_LABELS = {
    InviteState.SENT.value: _l("sent"), InviteState.OPENED.value: _l("opened"), InviteState.USED.value: _l("used"),
    InviteState.EXPIRED.value: _l("expired"), InviteState.REVOKED.value: _l("revoked"),
    InviteState.BOUNCED.value: _l("mail not delivered"),
}
# What the desk reads when an invite is refused (the code is in the audit trail).
INVITE_REFUSALS = {
    "not_allowed": READ_ONLY[1],
    "missing_in_ad": _l("There is no such account in the directory. Nothing was sent."),
    "no_address": _l("The directory has no mail address for this student. Nothing was sent."),
    "no_mail": _l("The portal has no mail server set up (PROOFUP_SMTP_HOST), so it cannot send invites."),
    "no_public_url": _l("The portal's address (PROOFUP_PUBLIC_URL) is not set, so a link cannot be made."),
}
INVITED = _l("Invite queued: the student gets a mail with a link within a minute.")
REVOKED = _l("Invite revoked: its link no longer works.")
NOT_REVOKED = _l("That invite was already used or revoked. Nothing was changed.")
MAIL_STATE_LABELS = {"bounced": _l("refused by the mail server"), "failed": _l("given up")}
# What each kind of mail is, in the desk's words (a kind not named here is shown as its template's name).
MAIL_KIND_LABELS = {"invite": _l("invite"), "security_unlocked": _l("notice: account unlocked"),
                    "security_method_added": _l("notice: new sign-in method"), "batch_reminder": _l("reminder")}


@bp.app_context_processor
def invite_labels() -> dict:
    """Give the console's templates the invite and mail state labels."""
    return {"invite_state_labels": INVITE_STATE_LABELS, "mail_state_labels": MAIL_STATE_LABELS,
            "mail_kind_labels": MAIL_KIND_LABELS}


@bp.post("/invites/new")
@staff_required
def invite():
    """Invite one student by mail (a reason is required; the invite and its mail commit together)."""
    target = Upn.parse(request.form.get("upn", ""))
    if target is None:
        return error_page(404, *UNKNOWN_STUDENT)
    back = redirect(url_for("helpdesk.student", upn=target))
    actor = _staff_actor("helpdesk.invite", upn=target)
    if actor is None:
        return back
    try:
        services().invites.invite(target, actor, client=client_address())
    except InviteError as refused:
        services().helpdesk.refuse(actor, "helpdesk.invite", refused.code, upn=target, client=client_address(),
                                   severity="warning" if refused.code == "not_allowed" else "info")
        if refused.code == "not_allowed":
            return error_page(403, *READ_ONLY)
        flash(str(INVITE_REFUSALS.get(refused.code, refused)), "error")
        return back
    flash(str(INVITED), "info")
    return back


@bp.post("/invites/<int:invite_id>/revoke")
@staff_required
def revoke(invite_id: int):
    """Take an invite back (with a reason): its link stops working."""
    back = redirect(request.form.get("back") if request.form.get("back", "").startswith("/helpdesk/")
                    else url_for("helpdesk.invites"))
    actor = _staff_actor("helpdesk.revoke_invite", invite_id=invite_id)
    if actor is None:
        return back
    try:
        revoked = services().invites.revoke(invite_id, actor, client=client_address())
    except InviteError as refused:
        services().helpdesk.refuse(actor, "helpdesk.revoke_invite", refused.code, client=client_address(),
                                   invite_id=invite_id, severity="warning")
        return error_page(403, *READ_ONLY)
    flash(str(REVOKED if revoked else NOT_REVOKED), "info" if revoked else "error")
    return back


def _filter(args) -> tuple[InviteFilter, dict]:
    """Read the list's filter from the query (unknown values mean "any")."""
    text = {k: (args.get(k) or "").strip()[:320] for k in ("student", "state", "batch")}
    state = text["state"] if text["state"] in INVITE_STATE_LABELS else ""
    batch = text["batch"] if text["batch"].isdigit() and len(text["batch"]) < 12 else ""
    query = InviteFilter(upn=text["student"], state=InviteState(state) if state else None,
                         batch_id=int(batch) if batch else None)
    return query, {"student": text["student"], "state": state, "batch": batch}


@bp.get("/invites")
@staff_required
def invites():
    """The invites, newest first, filtered by student, state and batch, a page at a time."""
    query, filters = _filter(request.args)
    before = _seen_grant(request.args.get("before", ""))
    found = services().invites.search(query, before_id=before, limit=PAGE_SIZE)
    older = found[-1].id if len(found) == PAGE_SIZE else None
    return render_template("helpdesk/invites.html", invites=found, filters=filters, older=older,
                           first_page=before is None, now=services().invites.clock(), staff=g.staff)


@bp.get("/mail-problems")
@staff_required
def mail_problems():
    """Mail the server refused for good or the portal gave up on, newest first."""
    return render_template("helpdesk/mail_problems.html", mails=services().outbox.problems(), staff=g.staff)
