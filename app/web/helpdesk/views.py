"""The console's pages: thin views over HelpdeskService; every change needs a reason and a fresh form."""
from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import Response, flash, g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l

from app.domain.actors import MAX_REASON, ActorError
from app.domain.audit import AuditQuery
from app.domain.grants import MAX_GRANT_MINUTES, MIN_GRANT_MINUTES
from app.domain.invites import InviteFilter
from app.domain.tap import Remedy
from app.domain.staff import LOOKUP_LIMIT, MIN_QUERY, look_up_query
from app.domain.upn import Upn
from app.services.helpdesk import StaffRefused
from app.web import client_address, services
from app.web.errors import error_page
from app.web.helpdesk import NAV, bp
from app.web.helpdesk.access import READ_ONLY, staff_required
from app.web.helpdesk.export import audit_csv

PAGE_SIZE = 50
ACTIONS = ("grant", "tap", "release", "extend", "end-sessions")
# What the desk reads when an action is refused (the code is in the audit trail).
REFUSALS = {
    "no_reason": _l("Say why (a reason, e.g. a ticket number). Nothing was changed."),
    "reason_too_long": _l("The reason is too long (at most %(max_reason)s characters). Nothing was changed."),
    "read_only": READ_ONLY[1],
    "stale_form": _l("The student's grant changed since this page was loaded (someone else acted, or it ended). "
                     "Nothing was changed. Look at the page again before you act."),
    "bad_minutes": _l("The length must be a whole number of minutes from %(min)s to %(max)s. Nothing was changed."),
    "not_extended": _l("The grant already runs at least that long, or cannot be extended. Nothing was changed."),
    "no_open_grant": _l("This student has no open grant. Nothing was changed."),
    "already_unlocked": _l("This student is already unlocked. Nothing was changed."),
    "privileged": _l("This is a privileged account (an administrator). The portal never unlocks one. Nothing was "
                     "changed, and the attempt is in the audit trail."),
    "disabled": _l("This account is disabled. Nothing was changed."),
    "missing_in_ad": _l("There is no such account in the directory. Nothing was changed."),
    "missing_in_entra": _l("This account is not in Microsoft Entra ID yet. Nothing was changed."),
    "out_of_scope": _l("This account is outside the part of the directory the portal serves. Nothing was changed."),
    "unlock_cap": _l("This student has reached the unlock limit for 7 days. Tick the override box (the reason is "
                     "recorded) if you are sure. Nothing was changed."),
    "not_a_member": _l("That account is no longer in the bypass group. Nothing was changed."),
    "tap_not_configured": _l("One-time passes are not offered by this portal (PROOFUP_REMEDY). Nothing was changed."),
    "tap_disabled": _l("The tenant's Temporary Access Pass policy is off. Nothing was changed."),
    "tap_out_of_scope": _l("The tenant's Temporary Access Pass policy does not cover this student. Nothing was "
                           "changed."),
    "tap_lifetime": _l("Microsoft refused the pass's lifetime (the tenant's policy changed?). Nothing was changed."),
    "tap_throttled": _l("Microsoft asked the portal to wait. Try again in a minute. Nothing was changed."),
    "tap_unavailable": _l("Microsoft could not be reached to make a pass. Nothing was changed."),
    "has_open_grant": _l("That member now has an open grant; release it from the student's page instead."),
}
TAP_FALLBACK = _l("Unlock (the bypass) is still possible.")
NOT_ELIGIBLE = _l("The portal's policy does not allow this for the student's state (%(state)s). Nothing was changed.")
DONE = {
    "grant": _l("Unlocked. The student can now register; the grant ends by itself."),
    "release": _l("Released: the student is out of the bypass group."),
    "extend": _l("The grant now runs longer."),
    "end-sessions": _l("The student's portal sessions were ended (%(count)s)."),
}
ROLE_LABELS = {"helpdesk": _l("service desk"), "auditor": _l("auditor, read only")}
GRANT_STATE_LABELS = {"pending": _l("starting"), "active": _l("open"), "released": _l("released (registered)"),
                      "expired": _l("expired"), "cancelled": _l("ended early"), "failed": _l("failed")}
BAD_FILTER = _l("A date in the filter could not be read (use the date fields). Nothing is shown.")
UNKNOWN_STUDENT = (_l("No such student"), _l("That is not a user principal name (name@domain). Nothing was changed."))


@bp.app_context_processor
def console_globals() -> dict:
    """Give the console's templates their tabs and the grant length bounds."""
    return {"helpdesk_nav": NAV, "min_grant_minutes": MIN_GRANT_MINUTES, "max_grant_minutes": MAX_GRANT_MINUTES,
            "max_reason": MAX_REASON, "role_labels": ROLE_LABELS, "grant_state_labels": GRANT_STATE_LABELS}


def _refusal_text(code: str) -> str:
    """Return what the desk reads for a refusal code (every placeholder filled; a text without one is unchanged)."""
    text = REFUSALS.get(code)
    if text is None:
        return str(NOT_ELIGIBLE) % {"state": code}
    return str(text) % {"max_reason": MAX_REASON, "min": MIN_GRANT_MINUTES, "max": MAX_GRANT_MINUTES}


def _staff_actor(action: str, *, upn: str | None = None, **detail):
    """Return the signed-in member acting with the form's reason; None (refusal audited, message shown) without one."""
    reason = request.form.get("reason", "")
    code = "reason_too_long" if len(reason) > MAX_REASON else ""
    if not code:
        try:
            return g.staff.actor(reason)
        except ActorError:
            code = "no_reason"
    services().helpdesk.refuse(g.staff.actor(), action, code, upn=upn, client=client_address(), **detail)
    flash(_refusal_text(code), "error")
    return None


@bp.get("/")
@staff_required
def home():
    """Start on "now"."""
    return redirect(url_for("helpdesk.now"))


@bp.get("/now")
@staff_required
def now():
    """Open grants, failed grants, unrecorded members and the day's refusals worth a look."""
    return render_template("helpdesk/now.html", view=services().helpdesk.now(), staff=g.staff)


@bp.get("/look-up")
@staff_required
def look_up():
    """Find students by UPN, name or reference code."""
    text = request.args.get("q", "")
    query = look_up_query(text)
    found = services().helpdesk.look_up(query) if query else []
    return render_template("helpdesk/look_up.html", q=text[:64], searched=bool(query), found=found,
                           too_short=bool(text.strip()) and not query, limit=LOOKUP_LIMIT, min_query=MIN_QUERY,
                           staff=g.staff)


def _student_upn(text: str) -> Upn | None:
    return Upn.parse(text)


@bp.get("/student/<path:upn>")
@staff_required
def student(upn: str):
    """The student's file: diagnosis and evidence, grant history, audit events, and the actions."""
    target = _student_upn(upn)
    if target is None:
        return error_page(404, *UNKNOWN_STUDENT)
    file = services().helpdesk.student_file(target)
    invites = services().invites.search(InviteFilter(upn=target), limit=10)
    return render_template("helpdesk/student.html", file=file, d=file.diagnosis, staff=g.staff,
                           grant_minutes=services().settings.grant_minutes, invites=invites,
                           batches=services().batches.of_student(target),
                           now=services().invites.clock(), invite_days=services().settings.invite_days,
                           tap_offered=Remedy.TAP in services().settings.remedies)


@bp.post("/student/<path:upn>/<action>")
@staff_required
def act(upn: str, action: str):
    """Grant, release, extend or end sessions: with a reason, on a fresh form; every refusal is audited."""
    target = _student_upn(upn)
    if target is None or action not in ACTIONS:
        return error_page(404, *UNKNOWN_STUDENT)
    desk, client = services().helpdesk, client_address()
    back = redirect(url_for("helpdesk.student", upn=target))
    actor = _staff_actor(f"helpdesk.{action}", upn=target)
    if actor is None:
        return back
    seen = _seen_grant(request.form.get("seen_grant", ""))
    try:
        if action == "tap":
            record, issued = desk.issue_tap(actor, target, seen_grant=seen, client=client,
                                            override_cap=request.form.get("override_cap") == "yes")
            # Shown on this answer only: never in a flash (the session cookie), a log or a table.
            return render_template("helpdesk/tap.html", upn=target, code=issued.code, staff=g.staff,
                                   minutes=issued.lifetime_minutes, expires_at=record.expires_at)
        if action == "grant":
            desk.grant(actor, target, minutes=request.form.get("minutes", ""), seen_grant=seen, client=client,
                       override_cap=request.form.get("override_cap") == "yes")
            flash(str(DONE["grant"]), "info")
        elif action == "release":
            desk.release(actor, target, seen_grant=seen, client=client)
            flash(str(DONE["release"]), "info")
        elif action == "extend":
            desk.extend(actor, target, minutes=request.form.get("minutes", ""), seen_grant=seen, client=client)
            flash(str(DONE["extend"]), "info")
        else:
            count = desk.end_sessions(actor, target, client=client)
            flash(str(DONE["end-sessions"]) % {"count": count}, "info")
    except StaffRefused as refused:
        if refused.code == "read_only":
            return error_page(403, *READ_ONLY)
        flash(f"{_refusal_text(refused.code)} {TAP_FALLBACK if refused.params.get('fallback') == 'bypass' else ''}".strip(), "error")
    return back


def _seen_grant(text: str) -> int | None:
    """Read the grant id the form was made for (0: none was open); None when the form names none."""
    return int(text) if text.isdigit() and len(text) < 12 else None


@bp.post("/members/remove")
@staff_required
def remove_member():
    """Remove a bypass member nobody granted (an explicit, audited action with a reason)."""
    desk, client = services().helpdesk, client_address()
    dn = request.form.get("dn", "")[:1024]
    actor = _staff_actor("helpdesk.remove_member", member_dn=dn)
    if actor is None:
        return redirect(url_for("helpdesk.now"))
    try:
        desk.remove_unrecorded(actor, dn, client=client)
        flash(str(_l("Removed from the bypass group.")), "info")
    except StaffRefused as refused:
        if refused.code == "read_only":
            return error_page(403, *READ_ONLY)
        flash(_refusal_text(refused.code), "error")
    return redirect(url_for("helpdesk.now"))


def _audit_query(args) -> AuditQuery | None:
    """Read the audit filter from a form's fields (dates in the portal's time zone); None when a date is bad."""
    zone = ZoneInfo(services().settings.timezone)

    def day(name: str, shift: timedelta = timedelta(0)) -> datetime | None:
        text = (args.get(name) or "").strip()
        if not text:
            return None
        return datetime.combine(datetime.strptime(text, "%Y-%m-%d").date(), time(0), zone) + shift

    try:
        since, until = day("since"), day("until", timedelta(days=1))  # "until" includes that whole day
    except ValueError:
        return None
    return AuditQuery(since=since, until=until, actor=(args.get("actor") or "").strip()[:320],
                      upn=(args.get("student") or "").strip()[:320], action=(args.get("action") or "").strip()[:64],
                      outcome=(args.get("outcome") or "").strip()[:32])


@bp.get("/audit")
@staff_required
def audit():
    """The audit trail, filtered and paged (newest first)."""
    query = _audit_query(request.args)
    before = _seen_grant(request.args.get("before", ""))
    events = [] if query is None else services().helpdesk.audit_page(query, before_id=before, limit=PAGE_SIZE)
    if query is None:
        flash(str(BAD_FILTER), "error")
    filters = {k: request.args.get(k, "")[:320] for k in ("since", "until", "actor", "student", "action", "outcome")}
    older = events[-1].id if len(events) == PAGE_SIZE else None
    return render_template("helpdesk/audit.html", events=events, filters=filters, older=older,
                           first_page=before is None, staff=g.staff)


@bp.post("/audit/export")
@staff_required
def export():
    """Download the filtered trail as CSV (formula-safe); the export is itself audited."""
    query = _audit_query(request.form)
    if query is None:
        flash(str(BAD_FILTER), "error")
        return redirect(url_for("helpdesk.audit"))
    events = services().helpdesk.export(g.staff.actor(), query, client=client_address())
    stamp = services().helpdesk.clock().strftime("%Y%m%d-%H%M")
    return Response(audit_csv(events), mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="proofup-audit-{stamp}.csv"'})

