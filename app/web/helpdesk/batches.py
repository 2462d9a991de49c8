"""Weekly batches in the console: upload a CSV, watch the check, read the preview, send, follow, export, close."""
from __future__ import annotations

from datetime import datetime

from flask import Response, abort, flash, g, jsonify, redirect, render_template, request, url_for
from flask_babel import format_datetime
from flask_babel import lazy_gettext as _l

from app import csrf
from app.domain.batch_csv import MAX_BYTES, MAX_ROWS
from app.domain.batches import Progress
from app.services.batches import BatchRefused
from app.web import client_address, services
from app.web.errors import error_page
from app.web.helpdesk import NAV, bp
from app.web.helpdesk.access import READ_ONLY, staff_required
from app.web.helpdesk.export import csv_text
from app.web.helpdesk.views import _staff_actor

NAV.append(("helpdesk.batch_list", _l("Weekly batches")))
# The upload's request: the file (at most MAX_BYTES) and a few short fields in multipart framing.
UPLOAD_REQUEST_BYTES = MAX_BYTES + 64 * 1024
# How often the batch page asks for its status: often while the check runs (the progress bar), less once the
# students move at their own pace (a 2,000-line dashboard is a few hundred KB of JSON).
POLL_SECONDS = {"checking": 2, "ready": 10, "sent": 10, "closed": 0}

# Why a whole file is refused (domain.batch_csv's codes); the desk reads these.
REJECTED = {
    "too_big": _l("The file is too big. A batch file may have at most %(max_kb)s KB (about %(max_rows)s students). "
                  "Nothing was saved."),
    "utf16": _l("The file is saved as UTF-16 (\"Unicode text\"). Save it again as \"CSV UTF-8\" and upload that. "
                "Nothing was saved."),
    "not_text": _l("This is not a text file. Save the list as \"CSV UTF-8\" and upload that. Nothing was saved."),
    "not_utf8": _l("Line %(line)s is not in UTF-8. Save the file again as \"CSV UTF-8\" and upload that. "
                   "Nothing was saved."),
    "empty": _l("The file is empty. Nothing was saved."),
    "no_upn_column": _l("No column with the students' user names. The first line must name the columns, one of "
                        "them \"upn\" (or \"userPrincipalName\"). Columns found: %(found)s. Nothing was saved."),
    "too_many_rows": _l("The file has more than %(max_rows)s students. Split it into smaller batches. "
                        "Nothing was saved."),
    "not_csv": _l("Line %(line)s cannot be read as CSV (a cell is far too long, or a quote is not closed). "
                  "Nothing was saved."),
    "no_rows": _l("The file names no students, only the column names. Nothing was saved."),
    "no_file": _l("Choose a file to upload. Nothing was saved."),
}
# Why a row gets no invite: the CSV's own codes and the checks' (domain.batches.Skip).
SKIPS = {
    "no_upn": _l("no user name in this line"),
    "bad_upn": _l("not a user name (name@domain)"),
    "formula": _l("a cell starts like a spreadsheet formula (=, +, -, @): not trusted"),
    "duplicate": _l("named twice (first on line %(first)s)"),
    "bad_address": _l("the mail address is not valid"),
    "too_long": _l("a cell is too long"),
    "bad_name": _l("the name holds control characters"),
    "unknown": _l("unknown: not in the directory or not in Microsoft Entra ID"),
    "privileged": _l("privileged account: never invited"),
    "disabled": _l("account disabled"),
    "out_of_scope": _l("outside the part of the directory the portal serves"),
    "registered": _l("already registered"),
    "not_required": _l("MFA is not required for this account"),
    "in_progress": _l("unlocked right now"),
    "no_address": _l("no mail address (neither in the file nor in the directory)"),
    "check_failed": _l("Microsoft Graph did not answer for this student: not invited on a guess"),
}
PROGRESS = {
    Progress.CHECKING: _l("being checked"), Progress.SKIPPED: _l("skipped"), Progress.NOT_SENT: _l("to be invited"), Progress.INVITED: _l("invited"),
    Progress.OPENED: _l("opened the link"), Progress.SIGNED_IN: _l("signed in"), Progress.UNLOCKED: _l("unlocked"),
    Progress.ELSEWHERE: _l("unlocked through another invite"),
    Progress.DONE: _l("registered and released"), Progress.EXPIRED: _l("expired"),
    Progress.BOUNCED: _l("mail bounced"), Progress.REVOKED: _l("invite taken back"),
}
STATES = {"checking": _l("checking"), "ready": _l("ready to send"), "sent": _l("sent"), "closed": _l("closed")}
REFUSED = {
    "read_only": READ_ONLY[1],
    "not_ready": _l("This batch cannot be sent now (it is still being checked, or it was sent or closed already). "
                    "Nothing was changed."),
    "already_closed": _l("This batch is closed already. Nothing was changed."),
    "no_mail": _l("The portal has no mail server set up (PROOFUP_SMTP_HOST), so invites would reach nobody. "
                  "Nothing was sent."),
    "no_public_url": _l("The portal's own address (PROOFUP_PUBLIC_URL) is not set, so invite links cannot be made. "
                        "Nothing was sent."),
}
CHECK_WORDS = _l("%(percent)s %% done. This page updates by itself.")
NO_BATCH = (_l("No such batch"), _l("There is no batch with this number."))
EXPORT_COLUMNS = ("line", "upn", "name", "mail", "skipped_because", "progress", "invited_at", "reminders",
                  "last_reminder_at")


@bp.app_context_processor
def batch_globals() -> dict:
    """Give the batch templates their labels."""
    return {"batch_states": STATES, "progress_labels": PROGRESS, "batch_poll_seconds": POLL_SECONDS,
            "check_words": CHECK_WORDS}


def skip_text(line) -> str:
    """Return the words for why a row is skipped."""
    text = SKIPS.get(line.skip)
    return str(text) % {"first": line.first_line} if text is not None else line.skip


def _refused_text(refused: BatchRefused) -> str:
    text = REJECTED.get(refused.code) or REFUSED.get(refused.code)
    if text is None:
        return refused.code
    return str(text) % {"max_kb": MAX_BYTES // 1024, "max_rows": MAX_ROWS, "line": "?", "found": "-",
                        **refused.params}


@bp.get("/batches")
@staff_required
def batch_list():
    """The batches, newest first, and the upload form."""
    return render_template("helpdesk/batches.html", batches=services().batches.recent(), staff=g.staff,
                           max_rows=MAX_ROWS, max_kb=MAX_BYTES // 1024)


@bp.post("/batches/upload")
@csrf.exempt  # checked below, once the larger body limit of this one route is in place
@staff_required
def batch_upload():
    """Read an uploaded CSV into a new batch (checked by the worker); refuse a file it cannot read, audited."""
    desk = services().batches
    if (request.content_length or 0) > UPLOAD_REQUEST_BYTES:  # refused before a byte of the body is read
        return batch_too_big()
    request.max_content_length = UPLOAD_REQUEST_BYTES
    csrf.protect()
    actor = _staff_actor("batch.upload")
    if actor is None:
        return redirect(url_for("helpdesk.batch_list"))
    sent = request.files.get("file")
    data = sent.read(MAX_BYTES + 1) if sent else b""
    try:
        batch = desk.upload(actor, data, label=request.form.get("label", ""), file_name=sent.filename or "",
                            client=client_address())
    except BatchRefused as refused:
        if refused.code == "read_only":
            return error_page(403, *READ_ONLY)
        flash(_refused_text(refused), "error")
        return redirect(url_for("helpdesk.batch_list"))
    return redirect(url_for("helpdesk.batch", batch_id=batch.id))


@bp.route("/batches/too-big", methods=["GET", "POST"])
@csrf.exempt  # it only shows a message (nginx sends an upload over its size limit here)
@staff_required
def batch_too_big():
    """Say that the file is too big (the portal's own limit, or the proxy's)."""
    services().helpdesk.refuse(g.staff.actor(), "batch.upload", "too_big", client=client_address(),
                               bytes=request.content_length or 0)
    return error_page(413, _l("The file is too big"), _refused_text(BatchRefused("too_big")))


@bp.get("/batches/<int:batch_id>")
@staff_required
def batch(batch_id: int):
    """One batch: the check's progress, the preview (who is skipped and why), then each student's progress."""
    board = services().batches.dashboard(batch_id)
    if board is None:
        return error_page(404, *NO_BATCH)
    return render_template("helpdesk/batch.html", board=board, batch=board.batch, staff=g.staff, skip_text=skip_text)


@bp.get("/batches/<int:batch_id>/status")
@staff_required
def batch_status(batch_id: int):
    """The batch's state and each student's progress as JSON, worded by the server (the page polls it)."""
    board = services().batches.dashboard(batch_id)
    if board is None:
        abort(404)
    body = board.as_json()
    body["state_label"] = str(STATES[board.batch.state.value])
    body["percent_label"] = str(CHECK_WORDS) % {"percent": board.percent}
    body["count_labels"] = {p.value: str(label) for p, label in PROGRESS.items()}
    for student in body["students"]:
        student["progress_label"] = str(PROGRESS[Progress(student["progress"])])
        at = student.pop("last_reminder_at")
        student["last_reminder"] = format_datetime(datetime.fromisoformat(at)) if at else ""
    return jsonify(body)


def _act(batch_id: int, action: str, call) -> Response:
    back = redirect(url_for("helpdesk.batch", batch_id=batch_id))
    actor = _staff_actor(f"batch.{action}", batch_id=batch_id)
    if actor is None:
        return back
    try:
        message = call(actor)
    except BatchRefused as refused:
        if refused.code == "read_only":
            return error_page(403, *READ_ONLY)
        flash(_refused_text(refused), "error")
        return back
    flash(message, "info")
    return back


@bp.post("/batches/<int:batch_id>/send")
@staff_required
def batch_send(batch_id: int):
    """Invite the batch's selected students (once)."""
    desk = services().batches
    return _act(batch_id, "send", lambda actor: str(_l("%(count)s invites are on their way.")) % {
        "count": desk.send(actor, batch_id, client=client_address())})


@bp.post("/batches/<int:batch_id>/recheck")
@staff_required
def batch_recheck(batch_id: int):
    """Check again the students Microsoft Graph did not answer for."""
    desk = services().batches
    return _act(batch_id, "recheck", lambda actor: str(_l("%(count)s students are being checked again.")) % {
        "count": desk.recheck(actor, batch_id, client=client_address())})


@bp.post("/batches/<int:batch_id>/close")
@staff_required
def batch_close(batch_id: int):
    """Close the batch: no more reminders, unused invites taken back, open unlocks ended."""
    desk = services().batches

    def closing(actor) -> str:
        revoked, released = desk.close(actor, batch_id, client=client_address())
        return str(_l("The batch is closed: %(revoked)s unused invites taken back, %(released)s unlocks ended.")) % {
            "revoked": revoked, "released": released}

    return _act(batch_id, "close", closing)


@bp.post("/batches/<int:batch_id>/export")
@staff_required
def batch_export(batch_id: int):
    """Download the batch as CSV (formula-safe); the export is audited."""
    board = services().batches.export(g.staff.actor(), batch_id, client=client_address())
    if board is None:
        return error_page(404, *NO_BATCH)
    rows = ((line.line, line.upn or line.shown, line.name, line.mail, skip_text(line) if line.skip else "",
             str(PROGRESS[line.progress]), line.invited_at.isoformat() if line.invited_at else "", line.reminders,
             line.last_reminder_at.isoformat() if line.last_reminder_at else "") for line in board.lines)
    return Response(csv_text(EXPORT_COLUMNS, rows), mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="proofup-batch-{batch_id}.csv"'})
