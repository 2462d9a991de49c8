"""The kiosk's own pages: attract screen, a fresh sign-in, and sign-out everywhere back to the attract screen.

Sign-out everywhere is a chain of same-window redirects, each step returning to a registered logout URI:
the portal session ends (POST /kiosk/done), then the authority's session (AD FS /adfs/oauth2/logout, or
Entra's logout when Entra is the authority), then Microsoft's session that My Sign-Ins used (Entra's
logout), and /kiosk/signed-out clears what the browser keeps for the portal and shows the attract screen.
"""
from __future__ import annotations

from urllib.parse import urlencode

from flask import current_app, flash, make_response, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l

from app.domain.sessions import SessionKind
from app.services.sessions import owner_of
from app.web import SESSION_COOKIE, client_address, current_session, services
from app.web.auth import BINDING_COOKIE, begin_sign_in
from app.web.kiosk import bp, current_kiosk, not_a_kiosk
from app.web.public import absolute_url
from app.web.site import LANGUAGE_COOKIE, minutes_left
from app.web.text import still_runs_text

REASONS = {"done": "signed out at the kiosk", "idle": "idle at the kiosk", "complete": "finished at the kiosk"}
SIGNED_OUT = {
    "done": _l("You are signed out everywhere. Thank you!"),
    "idle": _l("Nothing happened for a while, so we signed you out everywhere to keep your account safe."),
    "complete": _l("All done: the app is set up, and you are signed out everywhere."),
}
STILL_RUNS_HERE = _l("You can finish on your own phone: the set-up time ends by itself, or as soon as the app is "
                     "set up.")
# Clear-Site-Data: what the browser keeps for the portal (cache and storage). Not "cookies": that would drop
# the kiosk's own credential too; the portal's other cookies are deleted one by one instead.
CLEAR_SITE_DATA = '"cache", "storage"'
PORTAL_COOKIES = (SESSION_COOKIE, BINDING_COOKIE, LANGUAGE_COOKIE)


def _not_the_attract_screen():
    """Return where the attract screen's request goes instead, or None: away from a browser that is no kiosk, on
    to the student's pages while a student is signed in here (they carry on where they are)."""
    if current_kiosk() is None:
        return not_a_kiosk()
    record = current_session()
    if record is not None and record.kind is SessionKind.KIOSK:
        return redirect(url_for("student.diagnosis"))
    return None


@bp.get("/")
def attract():
    """The attract screen: "Start" (a student already signed in here carries on where they are)."""
    elsewhere = _not_the_attract_screen()
    return elsewhere if elsewhere is not None else render_template("kiosk/attract.html", kiosk=current_kiosk())


@bp.get("/start")
def start():
    """Start a fresh sign-in for the next student (prompt=login: the authority always asks for the password)."""
    if current_kiosk() is None:
        return not_a_kiosk()
    return begin_sign_in(SessionKind.KIOSK)


@bp.post("/done")
def done():
    """Sign the student out everywhere: "I'm done", the idle countdown, or the set-up finished."""
    why = request.form.get("why", "done")
    why = why if why in REASONS else "done"
    record = current_session()
    if record is not None:
        svc = services()
        grant = svc.store.open_grant_for(record.upn)
        svc.sessions.end(request.cookies.get(SESSION_COOKIE), actor=owner_of(record.kind, record.upn),
                         reason=REASONS[why])
        session.clear()
        flash(SIGNED_OUT[why], "info")
        if grant is not None and grant.open and grant.expires_at:  # allowed: the student may finish on their phone
            flash(f"{still_runs_text(grant.expires_at, minutes_left(grant.expires_at))} {STILL_RUNS_HERE}", "info")
    return sign_out_everywhere(services().identity)


def sign_out_everywhere(identity):
    """Send the browser through the authority's sign-out, then Microsoft's, back to the attract screen."""
    if services().settings.authority_is_adfs:
        return redirect(identity.logout_url(absolute_url("kiosk.signed_out_microsoft")), code=303)
    # Entra is the authority: its sign-out is also the Microsoft session My Sign-Ins used.
    return redirect(identity.logout_url(absolute_url("kiosk.signed_out")), code=303)


@bp.get("/signed-out/microsoft")
def signed_out_microsoft():
    """Second step: Microsoft's sign-out (it ends the session behind My Sign-Ins), back to /kiosk/signed-out."""
    from app.web.student import mysignins_sign_out_link

    home = absolute_url("kiosk.signed_out")
    endpoint = mysignins_sign_out_link()
    if not endpoint:
        return redirect(home)
    return redirect(endpoint + "?" + urlencode({"post_logout_redirect_uri": home}))


@bp.get("/signed-out")
def signed_out():
    """Last step: clear what the browser keeps for the portal and show the attract screen (with the news once)."""
    elsewhere = _not_the_attract_screen()  # e.g. a student signed in again meanwhile
    if elsewhere is not None:
        return elsewhere
    response = make_response(render_template("kiosk/attract.html", kiosk=current_kiosk(), signed_out=True))
    response.headers["Clear-Site-Data"] = CLEAR_SITE_DATA
    for name in PORTAL_COOKIES:  # the Flask session keeps only this page's fresh CSRF token (the news was read)
        response.delete_cookie(name, path="/", secure=current_app.config["SESSION_COOKIE_SECURE"], httponly=True,
                               samesite="Lax")
    return response
