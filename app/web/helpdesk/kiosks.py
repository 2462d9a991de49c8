"""The console's kiosks tab: enrol this browser as a kiosk (then sign out everywhere), list and revoke kiosks."""
from __future__ import annotations

from flask import flash, g, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l

from app.domain.actors import MAX_REASON
from app.domain.kiosks import MAX_NAME, KioskError
from app.web import SESSION_COOKIE, clear_session_cookie, client_address, services
from app.web.errors import error_page
from app.web.helpdesk import NAV, bp
from app.web.helpdesk.access import READ_ONLY, staff_required
from app.web.helpdesk.views import _staff_actor
from app.web.kiosk import current_kiosk, set_kiosk_cookie
from app.web.kiosk.views import sign_out_everywhere

NAV.append(("helpdesk.kiosks", _l("Kiosks")))
KIOSK_REFUSALS = {
    "no_name": _l("Give the kiosk a name people can find it by, e.g. “Library 3”. Nothing was changed."),
    "bad_name": _l("The name must be one line of at most %(max)s characters. Nothing was changed."),
    "not_active": _l("That kiosk was already revoked. Nothing was changed."),
}
ENROLLED = _l("This browser is now the kiosk “%(name)s”. You are signed out; the kiosk's start screen follows.")
REVOKED = _l("The kiosk “%(name)s” stopped working. Its student (if any) is signed out at their next step.")


@bp.get("/kiosks")
@staff_required
def kiosks():
    """The kiosks: enrolled, last seen, revoked; the form that makes this browser a kiosk."""
    return render_template("helpdesk/kiosks.html", kiosks=services().kiosks.kiosks(), staff=g.staff,
                           this_kiosk=current_kiosk(), max_name=MAX_NAME, max_reason=MAX_REASON)


def _refused(code: str):
    if code == "read_only":
        return error_page(403, *READ_ONLY)
    flash(str(KIOSK_REFUSALS[code]) % {"max": MAX_NAME}, "error")
    return redirect(url_for("helpdesk.kiosks"))


@bp.post("/kiosks/enrol")
@staff_required
def enrol_kiosk():
    """Make this browser a kiosk, then end the staff member's sessions here: the portal's and the authority's."""
    actor = _staff_actor("kiosk.enrol")
    if actor is None:
        return redirect(url_for("helpdesk.kiosks"))
    svc = services()
    try:
        kiosk, credential = svc.kiosks.enrol(actor, request.form.get("name", ""), client=client_address())
    except KioskError as refused:
        return _refused(refused.code)
    svc.sessions.end(request.cookies.get(SESSION_COOKIE), actor=g.staff.actor(), reason="kiosk enrolled")
    session.clear()
    flash(str(ENROLLED) % {"name": kiosk.name}, "info")
    response = sign_out_everywhere(svc.staff_identity)
    set_kiosk_cookie(response, credential)
    clear_session_cookie(response)
    return response


@bp.post("/kiosks/<int:kiosk_id>/revoke")
@staff_required
def revoke_kiosk(kiosk_id: int):
    """Stop a kiosk at once (with a reason)."""
    actor = _staff_actor("kiosk.revoke", kiosk_id=kiosk_id)
    if actor is None:
        return redirect(url_for("helpdesk.kiosks"))
    try:
        kiosk = services().kiosks.revoke(actor, kiosk_id, client=client_address())
    except KioskError as refused:
        return _refused(refused.code)
    flash(str(REVOKED) % {"name": kiosk.name}, "info")
    return redirect(url_for("helpdesk.kiosks"))
