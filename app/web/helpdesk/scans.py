"""Who will loop, before MFA is switched on: start a scan of a group, an OU or a list, watch it, invite."""
from __future__ import annotations

from flask import Response, abort, flash, g, jsonify, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l

from app.domain.batch_csv import CsvRejected, read_batch_csv
from app.domain.invites import InviteError
from app.domain.prediction import OUTCOME_ORDER
from app.services.onboarding import NotAllowed
from app.services.scan import GROUP, LIST, OU, ROW_FIELDS, ScanRefused
from app.web import client_address, services
from app.web.errors import error_page
from app.web.helpdesk import NAV, bp
from app.web.helpdesk.access import READ_ONLY, staff_required
from app.web.helpdesk.export import csv_text
from app.web.helpdesk.views import _staff_actor

NAV.append(("helpdesk.scans", _l("Who will loop")))
POLL_SECONDS = 2
MAX_LIST_CHARS = 60_000  # a pasted list: 2,000 UPNs of about 25 characters, inside the 64 KiB a form may have

OUTCOMES = {
    "will_loop": _l("will loop"), "unknown": _l("unknown: Microsoft did not answer, scan again later"),
    "will_register": _l("will register normally"), "in_progress": _l("unlocked right now"),
    "already_registered": _l("already registered"), "skipped": _l("skipped"),
}
REASONS = {
    "half_registered": _l("signed in to the Authenticator app or has a device, but no method"),
    "unregistered": _l("no method and no trace"), "has_strong_method": _l("has a method"),
    "grant_released": _l("registered after an unlock"), "grant_open": _l("an unlock is open"),
    "missing_in_ad": _l("not in the directory"), "missing_in_entra": _l("not in Microsoft Entra ID"),
    "disabled": _l("account disabled"), "privileged": _l("privileged account"),
    "out_of_scope": _l("outside the part of the directory the portal serves"),
    "not_in_required_group": _l("MFA is not required"), "graph_busy": _l("Microsoft asked us to wait"),
    "graph_unavailable": _l("Microsoft did not answer"), "sign_ins_unread": _l("sign-ins could not be read"),
}
PHASES = {"": _l("waiting for the portal's background worker"), "directory": _l("reading the directory"), "graph": _l("asking Microsoft"),
          "classify": _l("sorting the students"), "done": _l("done")}
REFUSED = {
    "directory": _l("The directory could not list these students: %(detail)s. Nothing was scanned."),
    "nobody": _l("There are no students to scan there. Nothing was scanned."),
    "too_many": _l("That is more than %(max)s students. Scan a smaller group. Nothing was scanned."),
    "no_source": _l("Give a group, an OU or a list of students. Nothing was scanned."),
    "not_done": _l("This scan has not finished. Nothing was sent."),
    "already_invited": _l("The invites of this scan were sent already. Nothing was sent again."),
    "no_mail": _l("The portal has no mail server set up (PROOFUP_SMTP_HOST), so invites would reach nobody. "
                  "Nothing was sent."),
    "no_public_url": _l("The portal's own address (PROOFUP_PUBLIC_URL) is not set, so invite links cannot be "
                        "made. Nothing was sent."),
    "bad_list": _l("The list cannot be read (%(detail)s). Give one user name per line, or a CSV with a "
                   "\"upn\" column. Nothing was scanned."),
}
# The list's State column: a scan waits for the worker, runs (how far), is done or failed.
STATES = {"queued": _l("queued"), "running": _l("running: %(percent)s %%"), "done": _l("done"),
          "failed": _l("failed")}
RETRYING = _l("The directory or Microsoft did not answer. The scan tries again by itself in a moment.")
FAILED = {"unavailable": _l("The directory or Microsoft did not answer. Scan again later."),
          "error": _l("The scan stopped because of an error. Scan again later."),
          "interrupted": _l("The scan stopped (the portal was updated while it ran). Scan again.")}


@bp.app_context_processor
def scan_globals() -> dict:
    """Give the scan templates their labels."""
    return {"scan_outcomes": OUTCOMES, "scan_reasons": REASONS, "scan_poll_seconds": POLL_SECONDS,
            "scan_outcome_order": [o.value for o in OUTCOME_ORDER], "scan_state": scan_state}


def _percent(found) -> int:
    """Return how far a scan is, from 0 to 100."""
    return 100 if found.state == "done" else int(100 * found.done / found.total) if found.total else 0


def scan_state(found) -> tuple[str, str]:
    """Return a scan's state (queued, running, done, failed) and the list's words for it (running says how far)."""
    state = "queued" if found.queued else found.state
    return state, str(STATES.get(state, state)) % {"percent": _percent(found)}


def _refused(code: str, **params) -> str:
    return str(REFUSED.get(code, code)) % {"max": services().scan.max_students, "detail": "", **params}


def _list_upns(text: str) -> list[str]:
    """Read a pasted list: a CSV with a UPN column, or one UPN a line (the batches' reader either way)."""
    if len(text) > MAX_LIST_CHARS:
        raise ScanRefused("bad_list", detail="too_big")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and "@" in lines[0]:
        text = "upn\n" + "\n".join(lines)  # a bare list of user names: give it the header a CSV has
    try:
        intake = read_batch_csv(text.encode("utf-8"))
    except CsvRejected as rejected:
        raise ScanRefused("bad_list", detail=rejected.code) from None
    return [r.upn for r in intake.good]


@bp.get("/scans")
@staff_required
def scans():
    """The scan form and the latest scans."""
    return render_template("helpdesk/scans.html", scans=services().scans.scans.recent(), staff=g.staff,
                           max_students=services().scan.max_students)


@bp.post("/scans")
@staff_required
def scan_start():
    """Start a scan of a group, an OU or a pasted list (helpdesk role, with a reason); refusals audited."""
    actor = _staff_actor("scan.start")
    if actor is None:
        return redirect(url_for("helpdesk.scans"))
    kind, value = request.form.get("kind", ""), request.form.get("value", "").strip()
    try:
        if kind in (GROUP, OU) and value:
            scan_id = services().scans.start(kind, value[:1000], actor=actor, client=client_address())
        elif kind == LIST and value:
            scan_id = services().scans.start(LIST, _list_upns(value), actor=actor, client=client_address(),
                                             source="list:pasted")
        else:
            raise ScanRefused("no_source")
    except NotAllowed:
        services().helpdesk.refuse(g.staff.actor(), "scan.start", "read_only", client=client_address())
        return error_page(403, *READ_ONLY)
    except ScanRefused as refused:
        services().helpdesk.refuse(g.staff.actor(), "scan.start", refused.code, client=client_address(), kind=kind)
        flash(_refused(refused.code, **refused.params), "error")
        return redirect(url_for("helpdesk.scans"))
    return redirect(url_for("helpdesk.scan", scan_id=scan_id))


def _scan_or_404(scan_id: int):
    found = services().scans.scans.get(scan_id)
    if found is None:
        abort(404)
    return found


def _status(found) -> dict:
    """Return what the page's script shows while a scan runs (worded here, not in the script)."""
    state, error = found.state, found.error
    percent = _percent(found)
    words = _l("%(done)s of %(total)s students: %(phase)s.", done=found.done, total=found.total,
               phase=PHASES.get(found.phase, found.phase))
    if state == "running" and error:
        words = RETRYING
    return {"state": state, "percent": percent, "phase": str(PHASES.get(found.phase, found.phase)),
            "words": str(words),
            "failed": str(FAILED.get(error, "")) if state == "failed" else ""}


@bp.get("/scans/<int:scan_id>")
@staff_required
def scan(scan_id: int):
    """A scan: its progress while it runs, then the outcome of each student with the evidence."""
    found = _scan_or_404(scan_id)
    return render_template("helpdesk/scan.html", scan=found, status=_status(found), staff=g.staff)


@bp.get("/scans/<int:scan_id>/status")
@staff_required
def scan_status(scan_id: int):
    """The scan's progress as JSON for the page's script."""
    return jsonify(_status(_scan_or_404(scan_id)))


@bp.post("/scans/<int:scan_id>/invite")
@staff_required
def scan_invite(scan_id: int):
    """Invite the students the scan found will loop (helpdesk role, with a reason; once per scan)."""
    _scan_or_404(scan_id)
    actor = _staff_actor("scan.invite")
    if actor is None:
        return redirect(url_for("helpdesk.scan", scan_id=scan_id))
    try:
        count = services().scans.invite(scan_id, actor=actor, reason=actor.reason, client=client_address())
    except (ScanRefused, InviteError) as refused:
        if refused.code == "not_allowed":
            services().helpdesk.refuse(g.staff.actor(), "scan.invite", "read_only", client=client_address())
            return error_page(403, *READ_ONLY)
        services().helpdesk.refuse(g.staff.actor(), "scan.invite", refused.code, client=client_address(),
                                   scan_id=scan_id)
        flash(_refused(refused.code), "error")
        return redirect(url_for("helpdesk.scan", scan_id=scan_id))
    flash(str(_l("%(count)s students got an invite by mail.", count=count)), "info")
    return redirect(url_for("helpdesk.scan", scan_id=scan_id))


@bp.post("/scans/<int:scan_id>/export")
@staff_required
def scan_export(scan_id: int):
    """Download a finished scan's students as CSV (formula-safe, the CLI's columns); the export is audited."""
    rows = services().scans.export(scan_id, actor=g.staff.actor(), client=client_address())
    if rows is None:
        abort(404)
    return Response(csv_text(ROW_FIELDS, ([row.get(field, "") for field in ROW_FIELDS] for row in rows)),
                    mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="proofup-scan-{scan_id}.csv"'})
