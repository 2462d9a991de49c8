"""The student's pages: start, diagnosis, unlock, guide with live status, cancel."""
from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import format_date, format_datetime, format_time, get_locale
from flask_babel import lazy_gettext as _l

from app.domain.state import State
from app.services.onboarding import NoOpenGrant, UnlockRefused
from app.web import client_address, current_session, login_required, services, signed_in_actor, signed_in_upn
from app.web.text import EXPLANATIONS, METHOD_LABELS, PHASE_TEXTS, STATE_LABELS

bp = Blueprint("student", __name__)

REFUSALS = {
    "not_yourself": _l("You can only unlock your own account."),
    "already_unlocked": _l("Your account is already unlocked."),
    "unlock_cap": _l("You have used every unlock this week. Please see the IT service desk in person."),
}
NOTHING_TO_CANCEL = _l("There was nothing to cancel: your unlock had already ended. Here is where you stand now.")
CANCELLED = _l("Cancelled. Your account is fully protected again; you can unlock it again at any time.")


def mysignins_link() -> str:
    """Return the My Sign-Ins security-info URL with the tenant and the page's language."""
    settings = services().settings
    params = {"lng": str(get_locale() or "en")}
    if settings.tenant_id:
        params = {"tenant": settings.tenant_id, **params}
    separator = "&" if "?" in settings.mysignins_url else "?"
    return settings.mysignins_url + separator + urlencode(params)


def _portal_user():
    """Return the signed-in person for the page header; None when even the session store cannot answer."""
    try:
        return current_session()
    except Exception:  # an error page (the database is what failed) must still render
        return None


@bp.app_context_processor
def page_globals() -> dict:
    """Give every template the labels, formatters and the page language."""
    return {
        "current_locale": str(get_locale() or "en"),
        "portal_user": _portal_user(),
        "explanations": EXPLANATIONS,
        "state_labels": STATE_LABELS,
        "method_labels": METHOD_LABELS,
        "phase_texts": {k: str(v) for k, v in PHASE_TEXTS.items()},
        "grant_minutes": services().settings.grant_minutes,
        "max_unlocks": services().settings.max_unlocks,
        "format_date": format_date,
        "format_time": format_time,
        "format_datetime": format_datetime,
    }


@bp.get("/")
def index():
    """Show the start page, or the diagnosis to a signed-in student."""
    if signed_in_upn():
        return redirect(url_for("student.diagnosis"))
    return render_template("index.html")


@bp.get("/diagnosis")
@login_required
def diagnosis():
    """Explain the student's state with the evidence behind it."""
    found = services().onboarding.diagnose(signed_in_upn())
    return render_template("diagnosis.html", d=found, State=State)


@bp.post("/unlock")
@login_required
def unlock():
    """Open a grant for the signed-in student (a second click lands on the same grant)."""
    upn = signed_in_upn()
    try:
        services().onboarding.unlock(upn, actor=signed_in_actor(), client=client_address())
    except UnlockRefused as refused:
        flash(REFUSALS.get(refused.code, _l("Your account cannot be unlocked here: see below why.")), "error")
        return redirect(url_for("student.diagnosis"))
    return redirect(url_for("student.guide"))


@bp.get("/guide")
@login_required
def guide():
    """Walk the student through registration while their grant is open."""
    upn = signed_in_upn()
    status = services().onboarding.status(upn, check_now=request.args.get("check") == "1")
    if status.phase in ("none", "cancelled", "failed"):
        return redirect(url_for("student.diagnosis"))  # a stale tab or bookmark: show where they stand
    return render_template("guide.html", status=status, mysignins_url=mysignins_link())


@bp.get("/status")
@login_required
def status():
    """Report the grant's phase as JSON for the guide page's poller (Graph is asked at most once per interval)."""
    return jsonify(services().onboarding.status(signed_in_upn()).as_json())


@bp.post("/status/check")
@login_required
def check_now():
    """Check now because the student says they have finished (still at most once per interval)."""
    return jsonify(services().onboarding.status(signed_in_upn(), check_now=True).as_json())


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
    return redirect(url_for("student.diagnosis"))
