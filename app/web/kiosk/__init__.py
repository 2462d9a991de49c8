"""Kiosk mode for orientation events (docs/kiosk.md): enrolled devices run a locked flow for one student at a time.

- this module   the device's credential (cookie), who is at the kiosk, and the guard every request passes
- views.py      attract screen, a fresh sign-in, and sign-out everywhere (portal, authority, Microsoft)

The student's steps are the student pages themselves (app/web/student.py) in a kiosk session: the same views,
templates and services, with the kiosk's header (countdown, "I'm done") and the guide's kiosk steps.
"""
from __future__ import annotations

from flask import Blueprint, current_app, g, redirect, request, session, url_for
from flask_babel import lazy_gettext as _l

from app.domain.actors import Actor
from app.domain.kiosks import Kiosk
from app.domain.sessions import SessionKind
from app.web import SESSION_COOKIE, audit_refusal, current_session, services
from app.web.errors import error_page

bp = Blueprint("kiosk", __name__, url_prefix="/kiosk")

KIOSK_COOKIE = "proofup_kiosk"  # the device's credential: random, HttpOnly, stored only as a hash
KIOSK_COOKIE_DAYS = 400  # the longest lifetime browsers allow a cookie (Chromium caps it at 400 days)
NOT_A_KIOSK = (_l("This device is not a kiosk"),
               _l("Kiosk pages work only on devices the service desk has set up as kiosks, and this one is not (or "
                  "no longer). Please ask the event staff for help."))
# On an enrolled device these go to the attract screen instead: the kiosk offers no other way in.
KIOSK_ENTRY_ENDPOINTS = ("student.index", "auth.sign_in")


def current_kiosk() -> Kiosk | None:
    """Return the working kiosk this browser is (its credential cookie), or None (read once per request)."""
    if "kiosk_device" not in g:
        g.kiosk_device = services().kiosks.device(request.cookies.get(KIOSK_COOKIE))
    return g.kiosk_device


def in_kiosk_session() -> bool:
    """Tell whether a student is signed in at a kiosk on this request (False when even the store cannot say)."""
    try:
        record = current_session()
    except Exception:  # an error page (the database is what failed) must still render
        return False
    return record is not None and record.kind is SessionKind.KIOSK


def set_kiosk_cookie(response, credential: str) -> None:
    """Leave the kiosk credential in this browser for KIOSK_COOKIE_DAYS.

    Over https it is SameSite=None, so the authority's cross-site form_post callback carries it too and the
    sign-in limits count per kiosk there as well; over plain http (a loopback demo) browsers refuse that.
    """
    secure = current_app.config["SESSION_COOKIE_SECURE"]  # the public address is https
    response.set_cookie(KIOSK_COOKIE, credential, max_age=KIOSK_COOKIE_DAYS * 24 * 3600, httponly=True,
                        secure=secure, samesite="None" if secure else "Lax", path="/")


def not_a_kiosk():
    """Refuse a kiosk page on a device that is not (or no longer) a working kiosk (audited)."""
    audit_refusal("kiosk.refused", "not_enrolled", severity="warning")
    return error_page(403, *NOT_A_KIOSK)


def guard():
    """End a kiosk session whose device was revoked (at once), and send an enrolled device's visitors to the kiosk."""
    if request.endpoint == "static":
        return None
    record = current_session()
    if record is not None and record.kind is SessionKind.KIOSK and current_kiosk() is None:
        services().sessions.end(request.cookies.get(SESSION_COOKIE), actor=Actor.student(record.upn),
                                reason="the kiosk was revoked")
        session.clear()
        g.portal_session = None
        g.forget_session_cookie = True  # site's after-request drops the token
        return not_a_kiosk()
    if request.endpoint in KIOSK_ENTRY_ENDPOINTS and current_kiosk() is not None and record is None:
        return redirect(url_for("kiosk.attract"))
    return None


@bp.app_context_processor
def kiosk_globals() -> dict:
    """Tell every template whether it is shown in a kiosk session, and the idle time-out's length."""
    return {"kiosk_mode": in_kiosk_session, "kiosk_idle_seconds": services().settings.kiosk_idle_seconds}


bp.before_app_request(guard)

from app.web.kiosk import views  # noqa: E402,F401  (registers the views on bp)
