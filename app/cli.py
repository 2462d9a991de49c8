"""The `proofup` command: demo, serve, simulator, worker, and admin commands (diagnose, grant, release, invite,
remove-member, backup, scan, doctor)."""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import tempfile
import time
from typing import Sequence

from app import logs
from app.config import DEMO_ENV_FILE, ENV_FILE_VARIABLE, Settings, SettingsError, load_settings
from app.domain.tap import REMEDY_SETTINGS

# Exit codes an admin's script can rely on.
OK = 0
REFUSED = 1  # the policy said no, or there was nothing to do
USAGE = 2  # argparse's own code for bad arguments
UNAVAILABLE = 3  # LDAP, Graph or the database did not answer
MISCONFIGURED = 4  # a setting is missing or malformed
INCOMPLETE = 5  # `proofup scan` finished, but Graph could not answer for some students: scan again later
# gunicorn's default access line plus the request id, so an id a student quotes leads to the request.
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms id=%({x-request-id}o)s'
ONCE_WAIT_SECONDS = 10.0  # how long `proofup worker --once` waits for another worker's cycle to end


def _actor(reason: str):
    """Return the admin running the command as the actor (`cli:<os user>`), with the reason they gave."""
    from app.domain.actors import Actor

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor.cli(user, reason=reason)


def _upn(text: str):
    """Parse a UPN argument once, at the edge; argparse turns the error into a usage message."""
    from app.domain.upn import InvalidUpn, Upn

    try:
        return Upn(text)
    except InvalidUpn as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _settings_for(args) -> Settings:
    """Load the settings from the environment, or with --demo from the running demo's state directory alone."""
    if getattr(args, "demo", None):  # PROOFUP_* variables of the admin's shell must not mix into the demo's
        env_file = os.path.join(args.demo, DEMO_ENV_FILE)
        if not os.path.isfile(env_file):
            raise SettingsError(f"no demo keeps its state in {args.demo} (no {DEMO_ENV_FILE} there): start "
                                f"`proofup demo --state-dir {args.demo}` first, or give the directory its banner names")
        return load_settings({ENV_FILE_VARIABLE: env_file})
    return load_settings()


def _services(settings: Settings, **options):
    from app.wiring import build_services

    return build_services(settings, **options)


def _fail(message: str, code: int) -> int:
    print(f"proofup: {message}", file=sys.stderr)
    return code


def diagnosis_as_dict(d) -> dict:
    """Turn a Diagnosis into plain JSON-able data for `proofup diagnose --json`."""
    ev = d.evidence
    return {
        "upn": d.upn,
        "state": d.state.value,
        "reason": d.reason.value,
        "can_unlock": d.can_unlock,
        "unlocks_in_window": d.unlocks_in_window,
        "unlock_cap_reached": d.capped,
        "mfa_required": d.mfa_required,
        "mfa_required_directly": d.mfa_required_directly,
        "in_bypass_group": d.in_bypass,
        "user_dn": d.user.dn if d.user else None,
        "enabled": d.user.enabled if d.user else None,
        "entra_user_id": d.entra_user_id or None,
        "methods": [m.kind for m in ev.methods] if ev else [],
        "authenticator_sign_ins": [s.created.isoformat() if s.created else None
                                   for s in ev.authenticator_sign_ins] if ev else [],
        "devices": [dev.display_name for dev in ev.devices] if ev else [],
        "unreadable_evidence": list(d.notes),
        "grant": {"id": d.grant.id, "state": d.grant.state.value,
                  "expires_at": d.grant.expires_at.isoformat() if d.grant.expires_at else None} if d.grant else None,
    }


def cmd_diagnose(args, settings: Settings) -> int:
    svc = _services(settings)
    try:
        found = svc.onboarding.diagnose(args.upn)
    finally:
        svc.close()
    from app.domain.reference import reference_code

    # The code the student's page shows under "Details for the service desk": the desk can match them.
    data = {**diagnosis_as_dict(found), "reference": reference_code(found.upn, settings.secret_key)}
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        for key, value in data.items():
            print(f"{key:24} {value}")
    return OK


def cmd_grant(args, settings: Settings) -> int:
    from app.domain.state import UNLOCK_CAP
    from app.services.onboarding import UnlockRefused

    actor = _actor(args.reason)  # a missing reason stops here, before anything is contacted
    svc = _services(settings)
    try:
        _, grant = svc.onboarding.unlock(args.upn, actor=actor, minutes=args.minutes,
                                         override_cap=args.override_cap, client="cli")
    except UnlockRefused as refused:
        if refused.code == UNLOCK_CAP:
            return _fail(f"not granted: {args.upn} has used {refused.diagnosis.unlocks_in_window} unlocks in the "
                         f"last 7 days (the cap is {settings.max_unlocks}); add --override-cap if you have "
                         "checked why", REFUSED)
        return _fail(f"not granted: {args.upn} is {refused.diagnosis.state.value} ({refused.code})", REFUSED)
    finally:
        svc.close()
    confirmed = "confirmed on every DC" if grant.dc_confirmed else "not yet seen by every DC (replication)"
    print(f"granted: {args.upn} is in the bypass group until {grant.expires_at.isoformat()} "
          f"(grant {grant.id}, {confirmed})")
    return OK


SCAN_REASON = "scan before MFA is switched on"


def _scan_targets(args, svc) -> tuple[list[str], str, list[str]]:
    """Return the UPNs to scan, the source as the audit names it, and the list's rows that were refused."""
    from app.services.scan import GROUP, OU

    if args.group or args.ou:
        kind, dn = (GROUP, args.group) if args.group else (OU, args.ou)
        return list(svc.scan.students_in(kind, dn)), f"{kind}:{dn}", []
    from app.domain.batch_csv import read_batch_csv

    with open(args.csv, "rb") as handle:
        intake = read_batch_csv(handle.read(1024 * 1024 + 1))
    refused = [f"line {r.line}: {r.shown} ({r.problem})" for r in intake.rows if not r.ok]
    return [r.upn for r in intake.good], f"list:{os.path.basename(args.csv)}", refused


def scan_rows(report) -> list[list[str]]:
    """Turn a scan report into rows of ROW_FIELDS (plain text; the CSV writer neutralises formulas)."""
    from app.services.scan import ROW_FIELDS, prediction_row

    return [[prediction_row(p)[field] for field in ROW_FIELDS] for p in report.predictions]


def _print_scan(report, refused: list[str], output: str, out) -> None:
    import csv

    from app.domain.cells import safe_cell
    from app.services.scan import ROW_FIELDS as SCAN_COLUMNS

    rows = scan_rows(report)
    if output == "csv":
        writer = csv.writer(out)
        writer.writerow(SCAN_COLUMNS)
        writer.writerows([safe_cell(cell) for cell in row] for row in rows)
        summary = sys.stderr  # stdout stays a clean CSV file
    else:
        shown = [list(SCAN_COLUMNS[:7])] + [row[:7] for row in rows]
        widths = [max(len(r[i]) for r in shown) for i in range(7)]
        for row in shown:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)
        summary = out
    counts = ", ".join(f"{outcome.value} {n}" for outcome, n in report.counts().items())
    print(f"{len(report.predictions)} students ({counts}); Graph requests: {report.graph_requests} (sign-in "
          f"report pages: {report.sign_in_pages}); {report.seconds:.1f} s", file=summary)
    for line in [*refused, *(f"not a user principal name: {v}" for v in report.invalid)]:
        print(f"skipped: {line}", file=summary)


def cmd_scan(args, settings: Settings) -> int:
    from app.domain.batch_csv import CsvRejected
    from app.domain.directory import DirectoryUnavailable, DirectoryError
    from app.domain.invites import InviteError

    if args.invite and not (args.reason or "").strip():
        return _fail("--invite needs --reason (the invites and the audit trail say why)", USAGE)
    actor = _actor(args.reason or SCAN_REASON)
    svc = _services(settings)
    try:
        try:
            upns, source, refused = _scan_targets(args, svc)
        except DirectoryUnavailable:
            raise
        except DirectoryError as exc:
            return _fail(f"nothing scanned: {exc}", REFUSED)
        except CsvRejected as exc:
            return _fail(f"nothing scanned: {args.csv} cannot be read ({exc.code})", REFUSED)
        except OSError as exc:
            return _fail(f"nothing scanned: {args.csv}: {exc.strerror}", REFUSED)
        progress = _progress_printer() if sys.stderr.isatty() else None
        report = svc.scan.scan(upns, actor=actor, source=source, progress=progress, client="cli")
        out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
        try:
            _print_scan(report, refused, args.format, out)
        finally:
            if args.output:
                out.close()
        if args.invite:
            try:
                made = svc.scan.invite_will_loop(report, actor=actor, reason=args.reason, client="cli")
            except InviteError as exc:
                return _fail(f"no invites sent: {exc}", REFUSED)
            print(f"invited: {len(made)} students who will loop", file=sys.stderr)
    finally:
        svc.close()
    return OK if report.complete else INCOMPLETE


def _progress_printer():
    """Return a progress callback that redraws one line on the terminal."""
    def show(progress) -> None:
        end = "\n" if progress.phase == "done" else ""
        print(f"\r{progress.phase}: {progress.done}/{progress.total}", end=end, file=sys.stderr, flush=True)
    return show


def cmd_release(args, settings: Settings) -> int:
    from app.services.onboarding import NoOpenGrant

    actor = _actor(args.reason)
    svc = _services(settings)
    try:
        svc.onboarding.cancel(args.upn, actor=actor, client="cli")
    except NoOpenGrant:
        return _fail(f"nothing to release: {args.upn} has no open grant", REFUSED)
    finally:
        svc.close()
    print(f"released: {args.upn} is out of the bypass group")
    return OK


def cmd_invite(args, settings: Settings) -> int:
    """Mail a student an invite link as cli:<user> (the desk's button, from the server)."""
    from app.domain.invites import InviteError

    actor = _actor(args.reason)
    svc = _services(settings)
    try:
        invite = svc.invites.invite(args.upn, actor, client="cli")
    except InviteError as refused:
        return _fail(f"not invited: {refused}", REFUSED)
    finally:
        svc.close()
    print(f"invited: {args.upn} gets a mail with a link that works once, until {invite.expires_at.isoformat()} "
          f"(invite {invite.id}; the worker sends the mail)")
    return OK


def cmd_remove_member(args, settings: Settings) -> int:
    """Remove a bypass member that no open grant backs (the desk's button on "now", from the server)."""
    from app.services.helpdesk import StaffRefused

    actor = _actor(args.reason)
    svc = _services(settings)
    try:
        removed = svc.helpdesk.remove_unrecorded(actor, args.dn, client="cli")
    except StaffRefused as refused:
        why = {"not_a_member": "it is not in the bypass group",
               "has_open_grant": "an open grant backs it: use `proofup release` with the student's UPN"}
        return _fail(f"not removed: {why.get(refused.code, refused.code)}", REFUSED)
    finally:
        svc.close()
    print(f"removed from the bypass group: {args.dn}" if removed else f"already gone from the bypass group: {args.dn}")
    return OK


def cmd_backup(args, settings: Settings) -> int:
    """Copy the SQLite database to a file while the portal runs (SQLite's online backup); PostgreSQL: pg_dump."""
    from app.adapters.store.backup import BackupError, backup_into, backup_sqlite
    from app.domain.grants import utc_now

    try:
        if os.path.isdir(args.target):
            target = backup_into(settings.database_url, args.target, at=utc_now(), keep=args.keep)
        elif args.keep is not None:
            return _fail("--keep needs a directory to keep the copies in", USAGE)
        else:
            backup_sqlite(settings.database_url, args.target)
            target = args.target
    except BackupError as exc:
        return _fail(str(exc), REFUSED)
    print(f"backed up: {target}")
    return OK


def cmd_doctor(args, settings: Settings) -> int:
    """Check the settings against every outside part, changing nothing; print one line per check."""
    from app.doctor import run_checks

    for key, value in settings.redacted().items():
        print(f"  {key:28} {value}")
    results = run_checks(settings)
    print("ok   settings   valid")
    for check in results:
        print(f"{('warn' if check.warning else 'ok  ') if check.ok else 'FAIL'} {check.name:10} {check.detail}")
    if any(check.misconfigured for check in results):
        return MISCONFIGURED
    return OK if all(check.ok for check in results) else UNAVAILABLE


def cmd_worker(args, settings: Settings) -> int:
    import threading

    from app.wiring import build_mail_sender, build_retention, build_worker
    from app.worker import run_worker, stopping_on_signals

    svc = _services(settings, upgrade_in_child=True)  # no thread runs yet; Alembic stays out of the worker
    sweeper, lease = build_worker(svc)
    mail, retention = build_mail_sender(svc), build_retention(svc)
    stop = threading.Event()  # set by SIGINT or SIGTERM: the worker ends its step, gives the lease back, exits 0
    # With --once, wait a little for a worker that gives the lease back between cycles (the demo's) to finish.
    deadline, reports = time.monotonic() + ONCE_WAIT_SECONDS, []
    try:
        with stopping_on_signals(stop):
            while not stop.is_set():
                reports = run_worker(sweeper, lease, interval=settings.worker_interval_seconds, once=args.once,
                                     confirm_interval=settings.confirm_interval_seconds, mail=mail,
                                     retention=retention, batches=svc.batches, scans=svc.scans, stop_event=stop)
                if not args.once or reports or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
    except KeyboardInterrupt:
        return OK
    finally:
        svc.close()
    if not args.once or (stop.is_set() and not reports):
        return OK
    if not reports:
        return _fail(f"another worker holds the lease; nothing done (waited {ONCE_WAIT_SECONDS:.0f} s)", REFUSED)
    print(f"worker: one cycle run: {reports[0].summary()}")
    for member in reports[0].foreign_members:
        print(f"  in the bypass group without a grant (left alone; `proofup remove-member` if wrong): {member}")
    return OK


# gunicorn's header limits, the same as deploy/nginx/proofup.conf's: a request line and each header at most
# 8 KiB, at most 50 headers. gthread workers give each request being read a thread: a client that sends
# slowly holds it, so 8 slow clients stop 2 workers x 4 threads. A buffering proxy is therefore required
# in front (docs/deploy.md); serve listens on loopback unless told otherwise.
SERVE_LIMITS = ("--limit-request-line", "8190", "--limit-request-fields", "50", "--limit-request-field_size", "8190")


def cmd_serve(args, settings: Settings) -> int:
    """Run the portal under gunicorn (threaded workers, app preloaded so the Graph models are shared)."""
    from app.metrics import MULTIPROC_ENV  # this process only execs gunicorn: its own metrics do not matter

    if not os.environ.get(MULTIPROC_ENV):
        # Every gunicorn worker writes its metrics to files here and a scrape adds them up; set it to a
        # directory `proofup worker` shares (deploy/systemd does) so that its metrics show up too.
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="proofup-metrics-")
    os.execv(sys.executable, gunicorn_argv(args.host, args.port, workers=args.workers, threads=args.threads))
    return OK  # not reached


def gunicorn_argv(host: str, port: int, *, workers: int, threads: int, app: str = "app:create_wsgi_app()",
                  config: str = "python:app.gunicorn_hooks") -> list[str]:
    """Return the gunicorn command line of `proofup serve` (bench/bench_status.py serves its apps with it too)."""
    return [sys.executable, "-m", "gunicorn", "--config", config, "--preload", "--worker-class", "gthread",
            "--workers", str(workers), "--threads", str(threads), *SERVE_LIMITS, "--bind", f"{host}:{port}",
            "--access-logfile", "-", "--access-logformat", ACCESS_LOG_FORMAT, app]


def _simulator_missing() -> str:
    """Say how to install the demo's extra when it is missing (the portal alone does not need it)."""
    import importlib.util

    if any(importlib.util.find_spec(name) is None for name in ("trustme", "aiosmtpd")):
        return "the simulator is not installed: pip install 'proofup-portal[demo]'"
    return ""


def cmd_demo(args) -> int:
    from app.demo import run_demo

    if missing := _simulator_missing():
        return _fail(missing, MISCONFIGURED)
    return run_demo(port=args.port, simulator_port=args.simulator_port, state_dir=args.state_dir, host=args.host,
                    remedy=args.remedy)


def cmd_simulator(argv: Sequence[str]) -> int:
    if missing := _simulator_missing():
        return _fail(missing, MISCONFIGURED)
    from app.simulator.cli import main as simulator_main

    return simulator_main(list(argv)) or OK


def _grant_minutes(text: str) -> int:
    """Read --minutes with the grant-length rule; argparse shows the rule's message and exits 2."""
    from app.domain.grants import GrantError, minutes_from_text

    try:
        return minutes_from_text(text)
    except GrantError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="proofup", description="ProofUp Portal: self-service escape from the "
                                     "AD FS MFA registration loop.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run portal + simulator + embedded directory with seeded students")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000, help="the portal's port (default 8000)")
    demo.add_argument("--simulator-port", type=int, default=8443,
                      help="the simulated Microsoft services' https port (default 8443)")
    demo.add_argument("--state-dir", default="var/demo", help="where the demo keeps its database and certificates")
    demo.add_argument("--remedy", choices=sorted(REMEDY_SETTINGS), default="bypass",
                      help="the way through the loop offered (PROOFUP_REMEDY): both or tap to try the one-time pass")

    # Admin commands reach the running demo with one flag: its state directory holds its settings and directory.
    against = argparse.ArgumentParser(add_help=False)
    against.add_argument("--demo", metavar="STATE_DIR",
                         help=f"act on the running `proofup demo` that keeps its state here (reads STATE_DIR/"
                              f"{DEMO_ENV_FILE}; the same as {ENV_FILE_VARIABLE}=STATE_DIR/{DEMO_ENV_FILE})")

    serve = sub.add_parser("serve", help="run the portal under gunicorn (settings from PROOFUP_*)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="where to listen (default loopback: the buffering reverse proxy in front connects here)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=2)
    serve.add_argument("--threads", type=int, default=4)

    sub.add_parser("simulator", help="run the Microsoft simulator alone (see `proofup simulator --help`)",
                   add_help=False)

    worker = sub.add_parser("worker", parents=[against],
                            help="expire, confirm and reconcile grants, and send queued mail, in the background")
    worker.add_argument("--once", action="store_true", help="run one cycle and exit")

    diagnose = sub.add_parser("diagnose", parents=[against], help="show a student's state and evidence")
    diagnose.add_argument("upn", type=_upn)
    diagnose.add_argument("--json", action="store_true", help="print JSON")

    grant = sub.add_parser("grant", parents=[against],
                           help="unlock a student as cli:<your user name> (the same policy as self-service "
                                "applies; the audit trail records you and the reason)")
    grant.add_argument("upn", type=_upn)
    grant.add_argument("--minutes", type=_grant_minutes, required=True, metavar="N",
                       help="how long the unlock lasts (the same bounds as PROOFUP_GRANT_MINUTES)")
    grant.add_argument("--reason", required=True, help="why, e.g. a ticket number (required)")
    grant.add_argument("--override-cap", action="store_true",
                       help="unlock even if the student used every unlock of the last 7 days (audited)")

    release = sub.add_parser("release", parents=[against],
                             help="end a student's open grant now (recorded as cancelled by you)")
    release.add_argument("upn", type=_upn)
    release.add_argument("--reason", required=True, help="why, e.g. a ticket number (required)")

    invite = sub.add_parser("invite", parents=[against],
                            help="mail a student a link to the portal that works once, for them only "
                                 "(PROOFUP_INVITE_DAYS), as cli:<your user name>")
    invite.add_argument("upn", type=_upn)
    invite.add_argument("--reason", required=True, help="why, e.g. a ticket number (required)")

    remove = sub.add_parser("remove-member", parents=[against],
                            help="remove a member of the bypass group that no open grant backs (listed on the "
                                 "desk's Now page and by `proofup worker --once`), as cli:<your user name>")
    remove.add_argument("dn", help="the member's distinguished name, as listed")
    remove.add_argument("--reason", required=True, help="why, e.g. a ticket number (required)")

    scan = sub.add_parser("scan", parents=[against],
                          help="predict who will loop once MFA is switched on, for a group, an OU or a CSV list")
    source = scan.add_mutually_exclusive_group(required=True)
    source.add_argument("--group", metavar="DN", help="the users of this group (nested groups followed)")
    source.add_argument("--ou", metavar="DN", help="the users under this OU")
    source.add_argument("--csv", metavar="FILE", help="a CSV list with a UPN column (as the desk's batches take)")
    scan.add_argument("--format", choices=("table", "csv"), default="table", help="table (default) or CSV")
    scan.add_argument("--output", metavar="FILE", help="write the table or CSV here instead of to stdout")
    scan.add_argument("--invite", action="store_true", help="send invite links to the students who will loop")
    scan.add_argument("--reason", help="why (required with --invite), e.g. the intake or a ticket")

    backup = sub.add_parser("backup", parents=[against],
                            help="copy the SQLite database to a file while the portal runs (docs/backup.md; "
                                 "for PostgreSQL use pg_dump)")
    backup.add_argument("target", help="a new file, or a directory: then the copy is named proofup-<UTC time>.sqlite3")
    backup.add_argument("--keep", type=int, metavar="N",
                        help="with a directory: keep the newest N copies there and delete older proofup-*.sqlite3")

    sub.add_parser("doctor", parents=[against], help="check the settings against the database, sign-in authority, "
                   "Graph, AD and Redis; changes nothing")
    return parser


COMMANDS = {"diagnose": cmd_diagnose, "grant": cmd_grant, "release": cmd_release, "doctor": cmd_doctor,
            "worker": cmd_worker, "serve": cmd_serve, "remove-member": cmd_remove_member, "backup": cmd_backup,
            "scan": cmd_scan, "invite": cmd_invite}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `proofup` command; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        log_format = logs.log_format()
    except ValueError as exc:
        return _fail(f"configuration: {exc}", MISCONFIGURED)
    logs.configure(os.environ.get("PROOFUP_LOG_LEVEL", "WARNING"), log_format)
    if argv[:1] == ["simulator"]:
        return cmd_simulator(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return cmd_demo(args)
    from app.domain.directory import DirectoryError
    from app.domain.evidence import GraphError
    from app.domain.grants import GrantError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return COMMANDS[args.command](args, _settings_for(args))
    except SettingsError as exc:
        return _fail(f"configuration: {exc}", MISCONFIGURED)
    except (DirectoryError, GraphError, SQLAlchemyError) as exc:
        return _fail(f"unavailable: {exc}", UNAVAILABLE)
    except (GrantError, ValueError) as exc:
        return _fail(str(exc), REFUSED)


if __name__ == "__main__":
    sys.exit(main())
