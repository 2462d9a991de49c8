"""Weekly batches: upload a CSV, check every row (the worker, in bulk), send invites, follow, remind, close.

- upload: the CSV is read (domain.batch_csv); the batch and its rows are written with the audit line; the CSV's
  bad rows are skipped at once with their reason. Nothing is looked up in the request.
- check_pending (worker): the rows left are diagnosed in bulk (BulkDiagnosisService: AD searches of 100, Graph
  $batch of 20, inside the budget), progress stored as it goes; each row gets its skip or is selected.
- send: one click, the batch turns sent first (a second click or a second desk member finds it sent), then the
  selected students are invited in ONE unit of work (InviteService.invite_many).
- dashboard: each student's progress, from their invites and the grants opened since the batch was sent that
  are the batch's (its own invites led to them, or no invite did); an unlock through another invite (a later
  batch's, the desk's) shows as "elsewhere", neither this batch's unlock nor a reason to remind.
- remind_due (worker): a reminder is a new invite (the old link stops working), so the invites are the one
  record of which reminders went out: a crash cannot lose one, nor send one twice.
- close: no more reminders, unused invites revoked, the open grants its invites led to released, audited.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from app.domain.actors import WORKER, Actor, ActorKind
from app.domain.batch_csv import CsvRejected, read_batch_csv
from app.domain.batches import (BatchGrants, BatchState, Progress, ReminderSchedule, RowCheck, Skip, batch_label,
                                 best_invite_state, progress_of, skip_for)
from app.domain.errors import Refused
from app.domain.grants import utc_now
from app.domain.invites import InviteFilter
from app.domain.staff import may_change_desk_work
from app.domain.upn import Upn
from app.services.jobs import CHUNK, throttled
from app.services.onboarding import NoOpenGrant
from app.services.refusals import audited

log = logging.getLogger(__name__)
REMINDER_MAIL = "batch_reminder"  # templates/mail/batch_reminder.txt and .html
INVITE_PAGE = 5_000  # invites read at once for a dashboard (a batch of 2,000 with two reminders is 6,000)
CHECK_CHUNK = CHUNK  # rows one worker tick checks at most (app/services/jobs.py)
# A batch marked sent whose invites are missing this long after the click was cut off (a crash): the worker
# finishes it. Longer than any invite_many can take, so the worker never races the click itself.
RESUME_SEND_AFTER_SECONDS = 600.0
RESUME_WINDOW = timedelta(days=1)  # a cut-off send older than this is left to the desk (the page shows it)
REMINDER_SLACK = timedelta(days=7)  # past its last reminder step by this much, a sent batch is not read again


class BatchRefused(Refused):
    """The desk may not do this to the batch now; `code` names why (audited before raising)."""


@dataclass(frozen=True)
class StudentBatch:
    """A batch a student is a line of, with the invites it sent them (newest first)."""

    batch: Any  # BatchView
    invites: list[Any] = field(default_factory=list)  # InviteView


@dataclass(frozen=True)
class StudentLine:
    """One row of the dashboard: the CSV's line, the verdict, and how far the student got."""

    row_id: int
    line: int
    upn: str
    shown: str
    name: str
    mail: str
    skip: str  # "" when selected
    diagnosis: str
    progress: Progress
    invited_at: datetime | None = None
    reminders: int = 0
    last_reminder_at: datetime | None = None
    first_line: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"row": self.row_id, "line": self.line, "upn": self.upn or self.shown, "skip": self.skip,
                "progress": self.progress.value, "reminders": self.reminders,
                "last_reminder_at": self.last_reminder_at.isoformat() if self.last_reminder_at else None}


@dataclass(frozen=True)
class Dashboard:
    """A batch and its students, with counts per progress."""

    batch: Any  # BatchView
    lines: list[StudentLine]
    counts: dict[str, int] = field(default_factory=dict)
    percent: int = 0  # of the check, while it runs

    def as_json(self) -> dict[str, Any]:
        return {"id": self.batch.id, "state": self.batch.state.value, "percent": self.percent,
                "checked": self.batch.rows_checked, "total": self.batch.rows_total, "counts": self.counts,
                "students": [line.as_json() for line in self.lines]}


class BatchService:
    """The desk's batches; each change through the batch store, the invite service and the grant service."""

    def __init__(self, *, batches, bulk, invites, onboarding, store, schedule: ReminderSchedule | None = None,
                 clock: Callable[[], datetime] | None = None):
        self.batches = batches  # BatchStore
        self.bulk = bulk  # BulkDiagnosisService
        self.invites = invites  # InviteService
        self.onboarding = onboarding  # releases a batch's open grants on close
        self.store = store  # grants and the audit trail
        self.schedule = schedule or ReminderSchedule()
        self.clock = clock or utc_now

    def work(self, actor: Actor = WORKER) -> None:
        """Do the worker's part: check uploaded batches, finish sends a crash cut off, queue due reminders."""
        self.check_pending(actor)
        if self.invites is not None:
            self.resume_sending(actor)
            self.remind_due(actor)

    # -- upload ----------------------------------------------------------------------------------

    def _may_change(self, actor: Actor, action: str, batch_id: int | None = None, client: str = "") -> None:
        """Let the desk's helpdesk role, an admin at the CLI and the worker change batches; refuse (audited) others."""
        if may_change_desk_work(actor):
            return
        code = "read_only" if actor.kind is ActorKind.STAFF else "not_allowed"
        raise self._refuse(actor, action, code, batch_id=batch_id, client=client, severity="warning")

    def _refuse(self, actor: Actor, action: str, code: str, *, batch_id: int | None = None, client: str = "",
                severity: str = "info", **params: Any) -> BatchRefused:
        return audited(BatchRefused, self.store, actor, action, code, batch_id=batch_id, client=client,
                       severity=severity, **params)

    def upload(self, actor: Actor, data: bytes, *, label: str = "", file_name: str = "", client: str = ""):
        """Read a CSV and write the batch (checking); BatchRefused (audited) for a file that cannot be read."""
        self._may_change(actor, "batch.upload", client=client)
        file_name = batch_label(file_name, "")[:200] if file_name else ""
        if not data and not file_name:
            raise self._refuse(actor, "batch.upload", "no_file", client=client)
        try:
            intake = read_batch_csv(data)
        except CsvRejected as rejected:
            raise self._refuse(actor, "batch.upload", rejected.code, client=client, file_name=file_name,
                               bytes=len(data), **rejected.params) from None
        if not intake.rows:
            raise self._refuse(actor, "batch.upload", "no_rows", client=client, file_name=file_name)
        return self.batches.create(actor, label=batch_label(label, file_name), file_name=file_name,
                                   rows=intake.rows, client=client)

    # -- check (the worker) ----------------------------------------------------------------------

    def check_pending(self, actor: Actor = WORKER) -> int:
        """Diagnose the rows of every batch still checking, oldest first; return how many rows were checked."""
        checked = 0
        for batch in self.batches.in_state(BatchState.CHECKING):
            checked += self.check_batch(batch.id, actor)
        return checked

    def check_batch(self, batch_id: int, actor: Actor = WORKER) -> int:
        """Diagnose the next CHECK_CHUNK unchecked rows in bulk (progress stored as it goes); return how many."""
        batch = self.batches.get(batch_id)
        rows = self.batches.unchecked(batch_id, limit=CHECK_CHUNK)
        if batch is None or not rows:
            self.batches.record_checks(actor, batch_id, {})
            return 0
        by_upn = {row.upn: row for row in rows}

        def progress(step) -> None:
            done = batch.rows_checked + step.percent * len(rows) / 100
            self.batches.record_progress(batch_id, 100 * done / max(1, batch.rows_total))

        outcome = self.bulk.diagnose_many([str(u) for u in by_upn], actor=actor, progress=throttled(progress))
        checks = {}
        for upn, row in by_upn.items():
            diagnosis = outcome.diagnoses.get(upn)
            if diagnosis is None:
                if upn not in outcome.failures:
                    continue  # not answered at all: left unchecked, tried again on the next pass
                checks[row.id] = RowCheck(Skip.CHECK_FAILED.value, outcome.failures[upn])
                continue
            mail = row.mail or (diagnosis.user.mail if diagnosis.user else "")
            skip = skip_for(diagnosis.state, diagnosis.reason, mail=mail)
            checks[row.id] = RowCheck(skip.value if skip else "", f"{diagnosis.state.value}/{diagnosis.reason.value}",
                                   mail)
        self.batches.record_checks(actor, batch_id, checks)
        log.info("batches: batch %s: %d rows checked in %d Graph requests", batch_id, len(checks),
                 outcome.graph_requests)
        return len(checks)

    def recheck(self, actor: Actor, batch_id: int, *, client: str = "") -> int:
        """Check again the rows Graph did not answer for (the batch goes back to checking); return how many."""
        self._may_change(actor, "batch.recheck", batch_id, client)
        count = self.batches.reopen(actor, batch_id, Skip.CHECK_FAILED.value, client=client)
        if count is None:
            raise self._refuse(actor, "batch.recheck", "not_ready", batch_id=batch_id, client=client)
        return count

    # -- send ------------------------------------------------------------------------------------

    def send(self, actor: Actor, batch_id: int, *, client: str = "") -> int:
        """Invite the selected students of a checked batch (once: the batch turns sent first); return how many."""
        self._may_change(actor, "batch.send", batch_id, client)
        if self.invites is None or not self.invites.settings.mail_enabled:
            raise self._refuse(actor, "batch.send", "no_mail", batch_id=batch_id, client=client)
        if not self.invites.settings.public_url:
            raise self._refuse(actor, "batch.send", "no_public_url", batch_id=batch_id, client=client)
        batch = self.batches.mark_sent(actor, batch_id, client=client)
        if batch is None:
            current = self.batches.get(batch_id)
            raise self._refuse(actor, "batch.send", "not_ready", batch_id=batch_id, client=client,
                               state=current.state.value if current else "none")
        return self._invite_selected(actor, batch_id, client)

    def _invite_selected(self, actor: Actor, batch_id: int, client: str = "") -> int:
        """Invite the batch's selected students that have no invite of this batch yet, in one unit of work."""
        invited = {invite.upn for invite in self._invites_of(batch_id)}
        wanted = {row.upn: row.mail for row in self.batches.rows(batch_id) if row.selected and row.upn not in invited}
        if not wanted:
            return 0
        made = self.invites.invite_many(list(wanted), actor, batch_id=batch_id, client=client, addresses=wanted)
        log.info("batches: batch %s: %d invites queued", batch_id, len(made))
        return len(made)

    def resume_sending(self, actor: Actor = WORKER) -> int:
        """Finish sending batches whose click was cut off (sent, invites missing, long ago); return invites made."""
        now, made = self.clock(), 0
        cut_off = now - timedelta(seconds=RESUME_SEND_AFTER_SECONDS)
        for batch in self.batches.sent_between(cut_off - RESUME_WINDOW, cut_off):
            made += self._invite_selected(actor, batch.id)
        return made

    # -- follow ----------------------------------------------------------------------------------

    def _invites_of(self, batch_id: int) -> list[Any]:
        """Return every invite made for a batch, oldest first (first invites and reminders), page by page."""
        found: list[Any] = []
        query = InviteFilter(batch_id=batch_id)
        while True:
            page = self.invites.search(query, before_id=found[-1].id if found else None, limit=INVITE_PAGE)
            found.extend(page)
            if len(page) < INVITE_PAGE:
                return found[::-1]

    def dashboard(self, batch_id: int) -> Dashboard | None:
        """Return the batch with each student's progress (database reads only: no Graph, no directory)."""
        batch = self.batches.get(batch_id)
        if batch is None:
            return None
        rows = self.batches.rows(batch_id)
        now = self.clock()
        invites: dict[str, list[Any]] = {}
        for invite in self._invites_of(batch_id) if batch.sent_at else []:
            invites.setdefault(invite.upn, []).append(invite)
        grants = self.batches.latest_grants([r.upn for r in rows if r.selected], batch.sent_at, batch_id=batch_id) \
            if batch.sent_at else BatchGrants({})
        first_lines: dict[str, int] = {}
        for row in rows:
            if row.upn:
                first_lines.setdefault(row.upn, row.line)
        lines = []
        for row in rows:
            mine = invites.get(row.upn, []) if row.upn else []
            state = best_invite_state([i.state(now).value for i in mine]) if mine else None
            progress = progress_of(selected=row.selected, invite_state=state, grant_state=grants.states.get(row.upn),
                                   checked=row.checked, unlocked_elsewhere=row.upn in grants.elsewhere)
            reminders = max(0, len(mine) - 1)
            lines.append(StudentLine(
                row_id=row.id, line=row.line, upn=row.upn or "", shown=row.shown, name=row.name, mail=row.mail,
                skip=row.problem if row.checked else "", diagnosis=row.diagnosis, progress=progress,
                invited_at=mine[0].created_at if mine else None, reminders=reminders,
                last_reminder_at=mine[-1].created_at if reminders else None,
                first_line=first_lines.get(row.upn, 0) if row.upn else 0))
        counts: dict[str, int] = {}
        for line in lines:
            counts[line.progress.value] = counts.get(line.progress.value, 0) + 1
        percent = 100 if batch.state is not BatchState.CHECKING else batch.check_percent
        return Dashboard(batch, lines, counts, percent)

    def export(self, actor: Actor, batch_id: int, *, client: str = "") -> Dashboard | None:
        """Return the batch for a CSV export, and audit the export (it holds students' names and addresses)."""
        board = self.dashboard(batch_id)
        if board is not None:
            self.store.audit(actor, "batch.exported", None, batch_id=batch_id, rows=len(board.lines), client=client)
        return board

    def of_student(self, upn: Upn, limit: int = 20) -> list[StudentBatch]:
        """Return the batches a student is in, newest first, each with the invites it sent them (for the desk)."""
        return [StudentBatch(batch, self.invites.search(InviteFilter(upn=upn, batch_id=batch.id), limit=INVITE_PAGE)
                             if batch.sent_at else [])
                for batch in self.batches.of_student(upn, limit)]

    def recent(self, limit: int = 50) -> list[Any]:
        """Return the newest batches first."""
        return self.batches.recent(limit)

    # -- remind (the worker) ---------------------------------------------------------------------

    def remind_due(self, actor: Actor = WORKER) -> int:
        """Send the reminders that are due in every sent batch; return how many went out.

        A reminder is a new invite of the batch (the reminder template): the invites are the one record of
        which reminders went out, written in one unit of work with their mail, so none is lost or doubled.
        """
        sent = 0
        now = self.clock()
        # Past the last step (with a week's slack for a worker that was down) a batch has nothing left to send.
        last_step = timedelta(days=max(self.schedule.days, default=0)) + REMINDER_SLACK
        for batch in self.batches.sent_between(now - last_step, now):
            board = self.dashboard(batch.id)
            due: dict[int, dict[str, str]] = {}
            for line in board.lines if board else []:
                if not line.progress.waiting or line.invited_at is None:
                    continue
                step = self.schedule.due_step(line.invited_at, line.reminders, now)
                if step is not None:
                    due.setdefault(step, {})[line.upn] = line.mail
            for step, addresses in sorted(due.items()):
                made = self.invites.invite_many(list(addresses), actor, reason=f"batch {batch.id}: reminder {step}",
                                                batch_id=batch.id, mail_kind=REMINDER_MAIL, addresses=addresses)
                sent += len(made)
        if sent:
            log.info("batches: %d reminders queued", sent)
        return sent

    # -- close -----------------------------------------------------------------------------------

    def close(self, actor: Actor, batch_id: int, *, client: str = "") -> tuple[int, int]:
        """Close a batch: no reminders, unused invites revoked, its open grants released; return (revoked, released).

        The batch turns closed first (so the worker sends nothing more); each revoke and each release is its own
        change with its audit line. A grant that cannot be released now still ends at its expiry.
        """
        self._may_change(actor, "batch.close", batch_id, client)
        batch = self.batches.mark_closed(actor, batch_id, client=client)
        if batch is None:
            raise self._refuse(actor, "batch.close", "already_closed", batch_id=batch_id, client=client)
        revoked = self.invites.revoke_batch(batch_id, actor, client=client) if batch.sent_at else 0
        released = 0
        # Only the grants this batch's invites led to: a grant the student opened through a later batch's
        # invite, or on their own, belongs to that batch or to nobody, and stays open.
        for grant_id, upn in self.batches.open_grants_from(batch_id):
            try:
                self.onboarding.cancel(upn, actor=actor, client=client, grant_id=grant_id)
                released += 1
            except NoOpenGrant:  # it ended meanwhile (registered, expired, released by the desk)
                continue
            except Exception:  # noqa: BLE001 - one student's failure must not keep the others' bypass open
                log.exception("batches: batch %s: could not release %s's grant; it ends at its expiry", batch_id, upn)
        self.store.audit(actor, "batch.close_finished", None, batch_id=batch_id, revoked=revoked, released=released,
                         client=client)
        return revoked, released
