"""The student's pages: start, diagnosis, unlock, guide with live status, cancel, and signing out while unlocked."""
from __future__ import annotations

import re
from urllib.parse import urlencode

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, session, url_for
from flask_babel import format_date, format_datetime, get_locale
from flask_babel import lazy_gettext as _l

from app.domain.reference import reference_code
from app.domain.state import State
from app.domain.tap import Remedy
from app.services.onboarding import GrantStatus, NoOpenGrant, TapRefused, UnlockRefused
from app.web import (client_address, current_session, json_login_required, login_required, services, signed_in_actor,
                     signed_in_upn, site)
from app.web.invites import used_invite
from app.web.kiosk import in_kiosk_session
from app.web.text import (CHECK_TEXTS, DEAD_ENDS, EXPLANATIONS, METHOD_LABELS, STATE_LABELS, status_words,
                          still_runs_text, time_left_text)

bp = Blueprint("student", __name__)

REFUSALS = {
    "not_yourself": _l("You can only do this for your own account."),
    "already_unlocked": _l("Your set-up time is already running."),
    "unlock_cap": _l("You have used every set-up time this week. Please see the service desk in person."),
    "bypass_not_configured": _l("This way is not offered here. Please use the one-time pass, or see the service "
                                "desk."),
}
# Why no one-time pass was made: plain words, and whether the other way is offered instead.
TAP_REFUSALS = {
    "tap_not_configured": _l("One-time passes are not offered here."),
    "tap_disabled": _l("The university does not hand out one-time passes at the moment."),
    "tap_out_of_scope": _l("Your account cannot get a one-time pass."),
    "tap_lifetime": _l("We could not make a one-time pass just now."),
    "tap_throttled": _l("Microsoft is busy right now, so we could not make a one-time pass. Please try again in "
                        "a minute."),
    "tap_unavailable": _l("We could not reach Microsoft to make a one-time pass. Please try again in a minute."),
}
TAP_FALLBACK = _l("You can use the other way below instead.")
LASTING_TAP_REFUSALS = frozenset({"tap_disabled", "tap_out_of_scope", "tap_lifetime", "tap_not_configured"})
NOTHING_TO_CANCEL = _l("There was nothing to stop: your set-up time had already ended. Here is where you stand now.")
CANCELLED = _l("Stopped. Your account is fully protected again; you can start again at any time.")
FINAL_PHASES = frozenset({"done", "expired", "cancelled", "failed", "none"})
DEVICES = ("phone", "computer")
# A phone or tablet: set the app up on the same device (My Sign-Ins offers a pairing link there, no QR code).
MOBILE_AGENT = re.compile(r"Mobi|Android|iPhone|iPad|iPod", re.IGNORECASE)


def mysignins_link(upn: str, *, hint: bool = True) -> str:
    """Return the My Sign-Ins security-info URL with the tenant, the page's language and (hint) the account."""
    settings = services().settings
    params = {"lng": str(get_locale() or "en"), **({"login_hint": upn} if hint else {})}
    if settings.tenant_id:
        params = {"tenant": settings.tenant_id, **params}
    separator = "&" if "?" in settings.mysignins_url else "?"
    return settings.mysignins_url + separator + urlencode(params)


def mysignins_sign_out_link() -> str:
    """Return Microsoft's sign-out for the tenant (it ends My Sign-Ins too), or "" without a Graph authority."""
    authority = services().settings.graph_authority.rstrip("/")
    return authority + "/oauth2/v2.0/logout" if authority else ""


def guide_device() -> str:
    """Return which guide fits: the student's switch (?device=) first, else a guess from the browser."""
    chosen = request.args.get("device")
    if chosen in DEVICES:
        session["device"] = chosen
    if session.get("device") in DEVICES:
        return session["device"]
    return "phone" if MOBILE_AGENT.search(request.user_agent.string or "") else "computer"


def status_view(status: GrantStatus) -> dict[str, object]:
    """Return what the live status shows (page and JSON alike): phase, sentence, time left, a warning."""
    final = status.phase in FINAL_PHASES
    site.note_unlock_until(None if final else status.expires_at)
    key = "checking" if status.note and status.phase == "waiting" else status.phase
    ends_at = status.expires_at if status.expires_at and not final else None
    text, ends, warning = status_words(key, ends_at, site.minutes_left(ends_at) if ends_at else 0)
    return {"phase": status.phase, "final": final, "text": text, "ends": ends, "warning": warning}


def _portal_user():
    """Return the signed-in person for the page header; None when even the session store cannot answer."""
    try:
        return current_session()
    except Exception:  # an error page (the database is what failed) must still render
        return None


@bp.app_context_processor
def page_globals() -> dict:
    """Give every template the signed-in person, the labels and formatters."""
    return {
        "portal_user": _portal_user(),
        "explanations": EXPLANATIONS,
        "dead_ends": DEAD_ENDS,
        "state_labels": STATE_LABELS,
        "method_labels": METHOD_LABELS,
        "check_texts": {k: str(v) for k, v in CHECK_TEXTS.items()},
        "grant_minutes": services().settings.grant_minutes,
        "max_unlocks": services().settings.max_unlocks,
        "mysignins_sign_out_url": mysignins_sign_out_link(),
        "format_date": format_date,
        "format_datetime": format_datetime,
    }


@bp.get("/")
def index():
    """Show the start page (saying so after a time-out), or the diagnosis to a signed-in student."""
    if signed_in_upn():
        return redirect(url_for("student.diagnosis"))
    ended_by, until = site.signed_out_by_time()
    settings = services().settings
    return render_template("student/index.html", ended_by=ended_by, until=until,
                           still_runs=still_runs_text(until, site.minutes_left(until)) if until else "",
                           session_minutes=settings.session_minutes, session_max_minutes=settings.session_max_minutes)


@bp.get("/diagnosis")
@login_required
def diagnosis():
    """Explain the student's state, with the evidence folded away for the service desk."""
    return render_diagnosis(services().onboarding.diagnose(signed_in_upn()))


def render_diagnosis(found, tap_refused: str = ""):
    """Render a diagnosis with the remedies offered; a pass just refused for good is not offered again."""
    until = found.grant.expires_at if found.grant and found.grant.open else None
    site.note_unlock_until(until)
    offered = [r.value for r in services().onboarding.remedies_for(found, signed_in_actor())
               if not (r is Remedy.TAP and tap_refused in LASTING_TAP_REFUSALS)] if found.can_unlock else []
    return render_template("student/diagnosis.html", d=found, State=State, offered=offered,
                           ends=time_left_text(until, site.minutes_left(until)) if until else "",
                           reference=reference_code(found.upn, current_app.config["SECRET_KEY"]))


@bp.post("/unlock")
@login_required
def unlock():
    """Open a grant for the signed-in student (a second click lands on the same grant)."""
    upn = signed_in_upn()
    try:
        _, record = services().onboarding.unlock(upn, actor=signed_in_actor(), client=client_address(),
                                                 invite_id=used_invite())
    except UnlockRefused as refused:
        flash(REFUSALS.get(refused.code, _l("We cannot do this for your account: see below why.")), "error")
        return redirect(url_for("student.diagnosis"))
    site.note_unlock_until(record.expires_at)
    return redirect(url_for("student.guide"))


@bp.post("/tap")
@login_required
def tap():
    """Make a one-time pass for the signed-in student and show it on this answer only (never again, never kept)."""
    upn = signed_in_upn()
    try:
        _, record, issued = services().onboarding.issue_tap(upn, actor=signed_in_actor(), client=client_address(),
                                                            invite_id=used_invite())
    except TapRefused as refused:
        message = TAP_REFUSALS.get(refused.code) or REFUSALS.get(refused.code)
        message = message or _l("We cannot do this for your account: see below why.")
        flash(f"{message} {TAP_FALLBACK}" if refused.fallback else str(message), "error")
        # The diagnosis in hand, not a new one: after a 429 every Graph call waits, and the fallback must not.
        return render_diagnosis(refused.diagnosis, refused.code)
    site.note_unlock_until(record.expires_at)
    if issued is None:  # a reload or a second click: the pass was shown once, on the first answer
        return redirect(url_for("student.guide"))
    return render_guide(upn, services().onboarding.status(upn), tap_code=issued.code,
                        tap_minutes=issued.lifetime_minutes)


@bp.get("/guide")
@login_required
def guide():
    """Walk the student through setting up the app (on this phone, or by QR code from a computer)."""
    upn = signed_in_upn()
    status = services().onboarding.status(upn, check_now=request.args.get("check") == "1")
    if status.phase in ("none", "cancelled", "failed"):
        return redirect(url_for("student.diagnosis"))  # a stale tab or bookmark: show where they stand
    return render_guide(upn, status)


def render_guide(upn: str, status: GrantStatus, tap_code: str = "", tap_minutes: int = 0):
    """Render the guide for the open grant's remedy; a pass's code only on the answer that made it."""
    return render_template("student/guide.html", status=status_view(status), device=guide_device(), upn=upn,
                           # A kiosk names no account in the link: Back in the browser must not refill it later.
                           mysignins_url=mysignins_link(upn, hint=not in_kiosk_session()),
                           remedy=status.remedy or Remedy.BYPASS.value, tap_code=tap_code, tap_minutes=tap_minutes)


@bp.get("/status")
@json_login_required
def status():
    """Report the grant's phase as JSON for the guide page's poller (from the database; the worker asks Graph)."""
    return jsonify(status_view_json())


@bp.post("/status/check")
@json_login_required
def check_now():
    """Ask the worker to check first at its next pass because the student says they have finished."""
    return jsonify(status_view_json(check_now=True))


def status_view_json(check_now: bool = False) -> dict[str, object]:
    """Return the grant's status as the poller reads it: the service's fields and the page's words."""
    found = services().onboarding.status(signed_in_upn(), check_now=check_now)
    return found.as_json() | status_view(found)


@bp.post("/cancel")
@login_required
def cancel():
    """Close the student's open grant as cancelled."""
    upn = signed_in_upn()
    try:
        services().onboarding.cancel(upn, actor=signed_in_actor(), client=client_address())
    except NoOpenGrant:
        flash(NOTHING_TO_CANCEL, "info")
    else:
        flash(CANCELLED, "info")
    site.note_unlock_until(None)
    return redirect(url_for("student.diagnosis"))


@bp.get("/leave")
@login_required
def leave():
    """Before signing out while the set-up time runs: say it keeps running, offer to end it too."""
    return render_template("student/leave.html")


@bp.post("/leave")
@login_required
def end_and_sign_out():
    """End the set-up time (if it still runs), then sign out as the header's button does."""
    from app.web.auth import sign_out

    upn = signed_in_upn()
    try:
        services().onboarding.cancel(upn, actor=signed_in_actor(), reason="ended by the student at sign-out",
                                     client=client_address())
    except NoOpenGrant:
        pass  # it ended meanwhile: signing out is all that is left
    return sign_out()
